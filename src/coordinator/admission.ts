// Connection slots: at most maxConnections in all, and at most maxConnectionsPerAddress from one source
// until a connection turns out to be a data stream with a valid token (those are bounded by the stream
// caps). A slot lives on the connection's own record and is given back once, whichever close comes first:
// after upgradeTLS Bun hands `close` another socket object than `open` got, so counting sockets in a Set
// leaked one slot per control connection until nobody could connect.
import net from "node:net";
import { logger } from "../log.ts";
import { RateLimiter, type Limits } from "./limits.ts";
import { metrics } from "./metrics.ts";

const log = logger("coordinator");

export interface Slot {
  /** The source this connection counts against; undefined once it no longer does. */
  source: string | undefined;
  released: boolean;
}

export class Admission {
  private used = 0;
  private closedSinceCollect = 0;
  private readonly bySource = new Map<string, number>();
  /** One warning a minute per refused source, so a flood cannot flood the log as well. */
  private readonly warned = new RateLimiter(1, 60_000, 10_000);

  constructor(private readonly limits: Pick<Limits, "maxConnections" | "maxConnectionsPerAddress">) {}

  /** Connections holding a slot now. */
  get open(): number {
    return this.used;
  }

  /** A slot for a new connection from `address`, or undefined when it must be refused. */
  admit(address: string | undefined): Slot | undefined {
    const max = this.limits.maxConnections;
    if (this.used >= max) {
      metrics.connectionsRefused.inc(1, { reason: "full" });
      if (this.warned.allow("*"))
        log.warn(`refusing connections: all ${max} connection slots are in use (--max-connections)`);
      return undefined;
    }
    const source = sourceKey(address);
    const n = this.bySource.get(source) ?? 0;
    if (n >= this.limits.maxConnectionsPerAddress) {
      metrics.connectionsRefused.inc(1, { reason: "per_address" });
      if (this.warned.allow(source))
        log.warn(`refusing connections from ${source}: it already holds ${n} (--max-connections-per-address)`);
      return undefined;
    }
    this.bySource.set(source, n + 1);
    this.used++;
    metrics.connectionsOpen.set(this.used);
    return { source, released: false };
  }

  /** The connection is a data stream with a valid token: it stops counting against its source. */
  unbind(slot: Slot): void {
    const source = slot.source;
    if (source === undefined) return;
    slot.source = undefined;
    const n = (this.bySource.get(source) ?? 1) - 1;
    if (n > 0) this.bySource.set(source, n);
    else this.bySource.delete(source);
  }

  /** Gives the slot back; a second call (the other of a TLS connection's two closes) does nothing. */
  release(slot: Slot): void {
    if (slot.released) return;
    slot.released = true;
    this.unbind(slot);
    this.used--;
    this.closedSinceCollect++;
    metrics.connectionsOpen.set(this.used);
  }

  /** Connections closed since the last call. */
  takeClosed(): number {
    const n = this.closedSinceCollect;
    this.closedSinceCollect = 0;
    return n;
  }

  /** Why a new connection would be refused whatever its source, or undefined when there is room. */
  full(): string | undefined {
    const max = this.limits.maxConnections;
    return this.used >= max ? `all ${max} connection slots are in use (--max-connections)` : undefined;
  }

  /** Connections counted against one source (tests and the flood script look at this). */
  fromSource(address: string): number {
    return this.bySource.get(sourceKey(address)) ?? 0;
  }
}

/**
 * What a per-address cap counts by: an IPv4 address (also when v4-mapped) as it is, an IPv6 address by
 * its /64, since one subscriber is usually given a whole /64 and could otherwise take a slot per address.
 */
export function sourceKey(address: string | undefined): string {
  const a = (address ?? "").replace(/%.*$/, "");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped) return mapped[1]!;
  if (!net.isIPv6(a)) return a;
  const [head = "", tail] = a.split("::");
  const groups = head ? head.split(":") : [];
  if (tail !== undefined) {
    const rest = tail ? tail.split(":") : [];
    const width = rest.reduce((w, g) => w + (g.includes(".") ? 2 : 1), 0);
    groups.push(...Array<string>(Math.max(0, 8 - groups.length - width)).fill("0"), ...rest);
  }
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(":")}::/64`;
}
