// This node's leases on the shares it serves (etcd leases, Kubernetes leader election's renew deadline):
// renewed together in one statement a few times per deadline. A renewal that finds a share no longer
// ours (another node claimed it, with a higher epoch) lets that share go at once; a node that cannot
// renew before its deadline because the database does not answer (a silent partition: it cannot tell
// whether another node can reach the database) stops serving every share before any other node may
// take one over (node ttl > deadline, and takers also wait for the lease to run out). When the
// database answers "down" instead (refused, shutting down), nobody can take a lease meanwhile, so live
// sessions go on; a node back from an outage waits a whole ttl before it judges another dead (node-mail.ts).
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { isSilent } from "../store/pg-connection.ts";
import type { NodeStore } from "../store/nodes.ts";
import type { Fence } from "../store/store.ts";

const log = logger("coordinator");

/** Said to the clients of a share this node let go of because it could not renew its lease. */
export const LEASE_LAPSED =
  "this coordinator node lost touch with the database and stopped serving; reconnecting through the load balancer";
/** Said to the clients of a share another node took over. */
export const LEASE_LOST = "the share is held by another coordinator node now; reconnecting through the load balancer";

export interface LeaseOptions {
  store: NodeStore;
  name: string;
  /** The renew deadline; shorter than the node ttl. */
  leaseMs: number;
  /** A share is ours no more (claimed by another node, or our lease lapsed): drop it and its clients. */
  letGo(shareId: string, reason: string): void;
}

export class Leases {
  private readonly held = new Map<string, number>();
  private lastRenew = Date.now();
  private renewing = false;
  /** The last renewal's failure: "silent" (no answer) or "refused" (the database said it is down). */
  private failure: "silent" | "refused" | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  /** Set when this node let go of its shares for want of an answer, until a renewal goes through again. */
  lapsed = false;

  constructor(private readonly o: LeaseOptions) {}

  get leaseMs(): number {
    return this.o.leaseMs;
  }

  start(): void {
    this.lastRenew = Date.now();
    this.timer ??= setInterval(() => void this.tick(), Math.max(50, this.o.leaseMs / 4));
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The lease's end for a claim made now. */
  until(now = Date.now()): number {
    return now + this.o.leaseMs;
  }

  took(shareId: string, epoch: number): void {
    this.held.set(shareId, epoch);
  }

  dropped(shareId: string): void {
    this.held.delete(shareId);
  }

  /** What a write about the share carries: a share not held here has no epoch a row can match. */
  fence(shareId: string): Fence {
    return { node: this.o.name, epoch: this.held.get(shareId) ?? -1 };
  }

  private async tick(now = Date.now()): Promise<void> {
    const silent = this.renewing || this.failure === "silent";
    if (now - this.lastRenew > this.o.leaseMs && silent) this.lapsed = true;
    if (this.held.size && now - this.lastRenew > this.o.leaseMs && silent) {
      log.warn(
        `no lease renewal for ${((now - this.lastRenew) / 1000).toFixed(1)}s and the database does not answer: letting go of ${this.held.size} share(s)`,
      );
      for (const id of [...this.held.keys()]) {
        this.held.delete(id);
        this.o.letGo(id, LEASE_LAPSED);
      }
    }
    if (this.renewing) return;
    this.renewing = true;
    try {
      const ours = await this.o.store.renewLeases(this.o.name, this.until(now));
      this.lastRenew = now;
      this.failure = undefined;
      this.lapsed = false;
      for (const [id, epoch] of [...this.held]) {
        if (ours.get(id) === epoch) continue;
        this.held.delete(id);
        log.warn(`share ${id}: another node holds it now (lease epoch ${ours.get(id) ?? "gone"}, ours ${epoch})`);
        this.o.letGo(id, LEASE_LOST);
      }
    } catch (err) {
      this.failure = isSilent(err) ? "silent" : "refused";
      log.debug(`lease renewal failed: ${errorMessage(err)}`);
    } finally {
      this.renewing = false;
    }
  }
}
