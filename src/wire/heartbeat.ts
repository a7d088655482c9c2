// Liveness of control connections: a peer that sends nothing for a while is pinged, and one that stays
// silent past a bound is declared gone, so a vanished laptop (no FIN, no RST) loses its access in
// seconds rather than at TCP's ~15-minute retransmission timeout. One ticker serves every connection of
// the process: 1,000 idle sessions cost one timer, no audit line and no log line per beat.
import { TesseraError } from "../errors.ts";

export interface HeartbeatOptions {
  /** Ping after this long without hearing from the peer. */
  pingMs: number;
  /** Declare the peer gone after this long without hearing from it. */
  deadMs: number;
}

export const DEFAULT_HEARTBEAT: HeartbeatOptions = { pingMs: 15_000, deadMs: 45_000 };

export interface Beating {
  /** When the peer was last heard from (any byte). */
  heardAt: number;
  pingedAt: number;
  readonly heartbeat: HeartbeatOptions;
  ping(): void;
  gone(err: TesseraError): void;
}

/** A peer that stayed silent past the bound; `since` is when it was last heard from. */
export class SilentError extends TesseraError {
  override name = "SilentError";
  constructor(
    readonly since: number,
    quietMs: number,
  ) {
    super("silent", `the connection went silent: nothing heard since ${clock(since)} (${Math.round(quietMs / 1000)}s)`);
  }
}

const beating = new Set<Beating>();
let ticker: ReturnType<typeof setInterval> | undefined;
let tickMs = 1000;

/** Watches a connection until the returned function is called (the connection closed). */
export function watchLiveness(b: Beating): () => void {
  beating.add(b);
  // Fine enough for the shortest ping interval in use, never busier than 10 times a second.
  const want = Math.max(100, Math.min(1000, Math.floor(b.heartbeat.pingMs / 4)));
  if (!ticker || want < tickMs) {
    tickMs = want;
    if (ticker) clearInterval(ticker);
    ticker = setInterval(tick, tickMs);
    ticker.unref?.();
  }
  return () => {
    beating.delete(b);
    if (beating.size === 0 && ticker) {
      clearInterval(ticker);
      ticker = undefined;
      tickMs = 1000;
    }
  };
}

function tick(): void {
  const now = Date.now();
  for (const b of [...beating]) {
    const quiet = now - b.heardAt;
    if (quiet >= b.heartbeat.deadMs) {
      beating.delete(b);
      b.gone(new SilentError(b.heardAt, quiet));
    } else if (quiet >= b.heartbeat.pingMs && now - b.pingedAt >= b.heartbeat.pingMs) {
      b.pingedAt = now;
      b.ping();
    }
  }
}

/** A wall-clock time as people read it in logs: HH:MM:SS UTC. */
export function clock(ms: number): string {
  return `${new Date(ms).toISOString().slice(11, 19)} UTC`;
}
