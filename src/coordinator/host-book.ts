// Enrolled hosts as the coordinator sees them live: which are connected (and on how many connections),
// and which the operator removed, here or on another node sharing the database.
import { logger } from "../log.ts";
import { background, type BrokerOptions, type Peer } from "./state.ts";

const log = logger("coordinator");

/** Removals made elsewhere are looked for this far back, so clocks a little apart lose none. */
const POLL_OVERLAP_MS = 60_000;

/** What a removed host's connections are told: the refusal no reconnect can fix, and its fix. */
export const HOST_REMOVED =
  "this host was removed by the operator; enrol it again with a new token: `tessera link COORDINATOR --token TOKEN` (the operator makes one with `tessera admin enroll-token`)";

export class HostBook {
  /** Keys of removed hosts; the store is the truth, this is what each check reads. */
  readonly removed = new Set<string>();
  private readonly peers = new Map<string, Set<Peer>>();
  private polledAt = 0;
  private polling = false;

  constructor(private readonly o: BrokerOptions) {}

  /** Every removal on record (a restart forgets nothing). */
  async load(): Promise<void> {
    const now = Date.now();
    for (const h of await this.o.store.removedHostsSince(0)) this.removed.add(h.spki);
    this.polledAt = now;
  }

  /** A host's connection said hello; false if that host was removed. */
  connected(peer: Peer, now: number): boolean {
    const spki = peer.host!.spki;
    if (this.removed.has(spki)) return false;
    let set = this.peers.get(spki);
    if (!set) this.peers.set(spki, (set = new Set()));
    set.add(peer);
    background(this.o.store.touchHost(spki, now), "host last seen", log.warn);
    return true;
  }

  disconnected(peer: Peer, now: number): void {
    const spki = peer.host?.spki;
    const set = spki ? this.peers.get(spki) : undefined;
    if (!set?.delete(peer)) return;
    if (set.size === 0) this.peers.delete(spki!);
    background(this.o.store.touchHost(spki!, now), "host last seen", log.warn);
  }

  /** The live control connections (agents, approvers) of a host. */
  connections(spki: string): Peer[] {
    return [...(this.peers.get(spki) ?? [])];
  }

  /** Marks a host removed here; true if it was not already. */
  markRemoved(spki: string): boolean {
    if (this.removed.has(spki)) return false;
    this.removed.add(spki);
    return true;
  }

  /**
   * Removals this node has not acted on yet (made by another node, or before a poll finished): asks the
   * store, one query a call, never two at once. Resolves with the keys newly marked removed.
   */
  async poll(now: number): Promise<string[]> {
    if (this.polling) return [];
    this.polling = true;
    try {
      const rows = await this.o.store.removedHostsSince(this.polledAt - POLL_OVERLAP_MS);
      this.polledAt = now;
      return rows.map((r) => r.spki).filter((spki) => this.markRemoved(spki));
    } finally {
      this.polling = false;
    }
  }
}
