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
  maxShares: 1000,
  maxSessions: 1000,
  maxStreamsPerSession: 4096,
  maxStreams: 20_000,
  maxPendingPerShare: 16,
  maxCodesPerShare: 64,
  maxConnections: 10_000,
  handshakeTimeoutMs: 10_000,
};
export type Limits = typeof LIMITS;

/** Fixed-window counter per key; the map is swept so it cannot grow without bound. */
export class RateLimiter {
  private readonly hits = new Map<string, { n: number; since: number }>();
  constructor(private readonly perWindow: number, private readonly windowMs = 60_000, private readonly maxKeys = 100_000) {}

  allow(key: string, now = Date.now()): boolean {
    let e = this.hits.get(key);
    if (!e || now - e.since >= this.windowMs) {
      if (this.hits.size >= this.maxKeys) this.sweep(now);
      e = { n: 0, since: now };
      this.hits.set(key, e);
    }
    return ++e.n <= this.perWindow;
  }

  private sweep(now: number): void {
    for (const [k, e] of this.hits) if (now - e.since >= this.windowMs) this.hits.delete(k);
    if (this.hits.size >= this.maxKeys) this.hits.clear();
  }
}
