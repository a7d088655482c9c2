// Control connections that hold no role are closed once idle for the role timeout, so saying hello alone
// holds no slot for long. A connection whose share lives on another node has its role there: that node's
// sweep judges it (cluster.ts), and one retrying what the database could not answer is not idle either.
import { ProtocolError } from "../errors.ts";
import type { Peer } from "./broker.ts";
import type { Cluster } from "./cluster.ts";

/** What the sweep reads and marks on a connection. */
export interface RoleHolder {
  client: Peer | undefined;
  /** Since when the connection has served, approved, asked for and held nothing. */
  idleSince: number | undefined;
}

export function sweepIdleRoles(
  conns: Iterable<RoleHolder>,
  busy: ReadonlySet<Peer>,
  cluster: Cluster | undefined,
  limit: number,
  now: number,
): void {
  const idle = () =>
    new ProtocolError(
      `closed after ${limit / 1000}s without registering, asking for access or resuming a session`,
      "timeout",
    );
  for (const c of conns) {
    const p = c.client;
    if (!p) continue;
    const retrying = p.retryingSince !== undefined && now - p.retryingSince < limit;
    if (busy.has(p) || cluster?.isBound(p) || retrying) c.idleSince = undefined;
    else if (c.idleSince === undefined) c.idleSince = now;
    else if (now - c.idleSince >= limit) {
      c.client = undefined;
      p.ch.fail(idle());
    }
  }
  cluster?.sweepStandIns(busy, now, limit, (p) => p.ch.fail(idle()));
}
