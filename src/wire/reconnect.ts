// The one reconnect loop, for the agent, the approver and the guest: after a lost connection, wait
// (capped exponential backoff with full jitter, so a restarted coordinator is not stampeded), try once,
// and go on until it works, a refusal no retry can fix arrives, or the time allowed has passed.
import { backoff } from "./backoff.ts";

export interface ReconnectOptions {
  /** One attempt; resolves once connected again (rejects to be retried). */
  connect(): Promise<void>;
  /** Errors no retry can fix: give up at once. */
  fatal?(err: Error | undefined): boolean;
  /** Longest wait between attempts. */
  capMs?: number;
  /** Give up once this long has passed since the connection was first lost. */
  giveUpAfterMs?: number;
  /** About to wait delayMs before the next attempt. */
  onRetry(err: Error | undefined, delayMs: number): void;
  onGiveUp(err: Error | undefined): void;
}

export class Reconnector {
  private attempt = 0;
  private lastDelay = 0;
  private since: number | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(private readonly o: ReconnectOptions) {}

  /** The connection was lost (or an attempt failed): retry after a while, or give up. */
  lost(err?: Error): void {
    if (this.stopped) return;
    this.since ??= Date.now();
    const tooLong = this.o.giveUpAfterMs !== undefined && Date.now() - this.since > this.o.giveUpAfterMs;
    if (this.o.fatal?.(err) || tooLong) {
      this.stop();
      return this.o.onGiveUp(err);
    }
    // Jittered, so restarted coordinators are not stampeded, yet never shorter than the wait before:
    // a user watching sees the waits grow to the cap, not jump up and down.
    const delay = Math.max(this.lastDelay, backoff(this.attempt++, this.o.capMs));
    this.lastDelay = delay;
    this.o.onRetry(err, delay);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopped) return;
      this.o.connect().then(
        () => {
          this.attempt = 0;
          this.lastDelay = 0;
          this.since = undefined;
        },
        (e: unknown) => this.lost(e instanceof Error ? e : new Error(String(e))),
      );
    }, delay);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
