// The fault rig's clients: a long-lived stream that echoes a checked chunk every few hundred ms, and a
// loop of short streams (10 KB each, checked byte for byte). Both count what happened rather than
// assert, so a test (or scripts/faults.ts) can say afterwards what failed, when and how.
import net from "node:net";
import { randomBytes } from "node:crypto";
import { roundTrip } from "../e2e/harness.ts";

/** One TCP connection through a guest's forward, kept open and checked until stop(). */
export class LongStream {
  sent = 0;
  echoed = 0;
  cutAt: number | undefined;
  corrupt = false;
  private readonly sock: net.Socket;
  private timer: ReturnType<typeof setInterval> | undefined;
  private expect = Buffer.alloc(0);
  private stopped = false;

  constructor(port: number, everyMs = 250) {
    this.sock = net.connect(port, "127.0.0.1");
    this.sock.on("error", () => {});
    this.sock.on("close", () => {
      if (!this.stopped) this.cutAt ??= Date.now();
      clearInterval(this.timer);
    });
    this.sock.on("data", (d: Buffer) => {
      const want = this.expect.subarray(0, d.length);
      if (!want.equals(d)) this.corrupt = true;
      this.expect = this.expect.subarray(d.length);
      this.echoed += d.length;
    });
    this.timer = setInterval(() => this.tick(), everyMs);
  }

  private tick(): void {
    // Nothing new while the last chunk is still on its way: a stalled stream shows as a growing gap.
    if (this.expect.length > 0) return;
    const chunk = randomBytes(1024);
    this.expect = Buffer.concat([this.expect, chunk]);
    this.sent += chunk.length;
    this.sock.write(chunk);
  }

  /** Resolves once `n` more bytes have come back (an event to wait on instead of a sleep). */
  async echoedMore(n: number, timeoutMs = 30_000): Promise<void> {
    const target = this.echoed + n;
    const deadline = Date.now() + timeoutMs;
    while (this.echoed < target) {
      if (this.cutAt || Date.now() > deadline)
        throw new Error(`long stream: ${this.echoed}/${target} bytes back${this.cutAt ? ", cut" : ""}`);
      await Bun.sleep(50);
    }
  }

  get ok(): boolean {
    return this.cutAt === undefined && !this.corrupt;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.sock.destroy();
  }
}

export interface ShortResult {
  at: number;
  ok: boolean;
  ms: number;
  error?: string;
}

/** Short streams one after another through a guest's forward, each 10 KB echoed and compared. */
export class ShortLoop {
  readonly results: ShortResult[] = [];
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly port: number,
    private readonly size = 10_240,
    private readonly pauseMs = 100,
  ) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const payload = randomBytes(this.size);
      const at = Date.now();
      const r = await Promise.race([
        roundTrip(this.port, payload).then(
          (got) => ({ ok: got.equals(payload), error: got.equals(payload) ? undefined : `got ${got.length} bytes` }),
          (e: Error) => ({ ok: false, error: e.message }),
        ),
        Bun.sleep(20_000).then(() => ({ ok: false, error: "no answer in 20 s" })),
      ]);
      this.results.push({ at, ms: Date.now() - at, ...r });
      await Bun.sleep(this.pauseMs);
    }
  }

  get ok(): number {
    return this.results.filter((r) => r.ok).length;
  }

  failed(from = 0, to = Number.POSITIVE_INFINITY): ShortResult[] {
    return this.results.filter((r) => !r.ok && r.at >= from && r.at < to);
  }

  /** Resolves once `n` more streams have succeeded. */
  async succeeded(n: number, timeoutMs = 60_000): Promise<ShortResult> {
    const target = this.ok + n;
    const deadline = Date.now() + timeoutMs;
    while (this.ok < target) {
      if (Date.now() > deadline) throw new Error(`short streams: ${this.ok}/${target} succeeded`);
      await Bun.sleep(50);
    }
    return this.results.filter((r) => r.ok).at(-1)!;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}
