// Default limits and the per-address rate limiter; every count the coordinator keeps has a cap.
export const LIMITS = {
  codeTtlMs: 10 * 60_000,
  approvalTimeoutMs: 2 * 60_000,
  idleTimeoutMs: 30 * 60_000,
  /** How long a share waits for its agent, and a session for its guest, to come back. */
  resumeGraceMs: 2 * 60_000,
  streamTokenTtlMs: 10_000,
  /** How often every live share and session is checked again (host removed, agent or guest away, idle). */
  revalidateMs: 1000,
  guestCertSeconds: 12 * 3600,
  hostCertSeconds: 365 * 86400,
  redeemPerMinute: 10,
  /** Redeems and requests by share id a minute on one node, from everyone together (each /64 still gets its 10). */
  redeemGlobalPerMinute: 600,
  maxShares: 1000,
  maxSessions: 1000,
  maxStreamsPerSession: 4096,
  /** Streams of one session offered and not yet paired: each may hold a target connection on the host. */
  maxPendingStreamsPerSession: 256,
  maxStreams: 20_000,
  maxPendingPerShare: 16,
  /** Requests one source address, and one guest key, may have waiting on one share: nobody fills the host's queue. */
  maxPendingPerAddress: 4,
  maxPendingPerGuestKey: 1,
  /** Free refusals (rate-limited, bad codes, bad enrolment tokens) are audited once per address per window... */
  refusalAuditWindowMs: 60_000,
  /** ...for at most this many addresses a window; attempts from more are counted on one "(other addresses)" line. */
  maxRefusalAddresses: 1000,
  maxCodesPerShare: 64,
  maxConnections: 10_000,
  handshakeTimeoutMs: 10_000,
  /** Connections from one source address (an IPv6 /64) until they turn out to be data streams (bounded by the stream caps). */
  maxConnectionsPerAddress: 256,
  /** A control connection that serves, approves, asks for or holds nothing for this long is closed. */
  roleTimeoutMs: 30_000,
  /** Once a frame's first byte has arrived, the rest must arrive within this. */
  frameTimeoutMs: 10_000,
  /** Shares one enrolled host may hold at once (online or waiting for their agent), so no host takes every share slot. */
  maxSharesPerHost: 64,
  /** A control connection quiet this long is pinged; silent this long it is gone (its session waits out the grace). */
  heartbeatPingMs: 15_000,
  heartbeatDeadMs: 45_000,
};
export type Limits = typeof LIMITS;

/**
 * Fixed-window counter per key. The map is bounded: when full, expired windows go first, then the oldest
 * keys (a flood of new keys evicts those longest unseen, never clears the lot, so a blocked asker stays blocked).
 */
export class RateLimiter {
  private readonly hits = new Map<string, { n: number; since: number }>();
  constructor(
    private readonly perWindow: number,
    private readonly windowMs = 60_000,
    private readonly maxKeys = 100_000,
  ) {}

  allow(key: string, now = Date.now()): boolean {
    let e = this.hits.get(key);
    if (!e || now - e.since >= this.windowMs) {
      this.hits.delete(key);
      if (this.hits.size >= this.maxKeys) this.sweep(now);
      e = { n: 0, since: now };
      this.hits.set(key, e);
    }
    return ++e.n <= this.perWindow;
  }

  /** Gives back one attempt (one that could not be judged at all, the database being down). */
  refund(key: string): void {
    const e = this.hits.get(key);
    if (e && e.n > 0) e.n--;
  }

  private sweep(now: number): void {
    for (const [k, e] of this.hits) if (now - e.since >= this.windowMs) this.hits.delete(k);
    // Oldest first (a Map keeps insertion order, and a key is re-inserted when its window starts again).
    for (const k of this.hits.keys()) {
      if (this.hits.size < this.maxKeys) break;
      this.hits.delete(k);
    }
  }
}
