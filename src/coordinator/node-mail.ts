// A node's view of its deployment: its own heartbeat row, which other nodes are alive, and mail to and
// from them. A message is a row in PostgreSQL; NOTIFY on the addressee's channel only wakes it, and a
// slow poll catches what a dropped LISTEN connection missed (nothing is replayed to a listener that was away).
import { createHash } from "node:crypto";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { nodeChannel, type NodeStore, type NodeRow } from "../store/nodes.ts";

const log = logger("coordinator");

/** Fewest milliseconds between two reads of the live nodes outside the heartbeat. */
const REFRESH_MS = 200;

export interface NodeMailOptions {
  store: NodeStore;
  name: string;
  advertise: string;
  /** A node whose heartbeat is older than this is gone; it beats four times per ttl. */
  ttlMs: number;
  onMail: (from: string, body: unknown) => void;
  onNodeLost: (name: string) => void;
}

/** The first bytes of a stream token name the node that holds the stream (see Splicer). */
export function nodeTag(name: string): Buffer {
  return createHash("sha256").update(`tessera-node:${name}`).digest().subarray(0, 4);
}

export class NodeMail {
  readonly live = new Map<string, NodeRow>();
  private seq = 0;
  private sending: Promise<void> = Promise.resolve();
  private draining = false;
  private again = false;
  private timers: ReturnType<typeof setInterval>[] = [];
  private sub: { unlisten(): Promise<void> } | undefined;
  private stopped = false;
  /** Reads of the live nodes outside the heartbeat: the one under way, the one queued behind it, when the last began. */
  private reading: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;
  private readAt = 0;
  /**
   * Since when this node's own heartbeats have gone through without a gap. Only a node that has watched
   * the table for a whole ttl may call another node dead: after an outage of the database itself every
   * heartbeat is old, and the first node back must not take the others' shares before they beat again.
   */
  private upSince: number | undefined;

  constructor(private readonly o: NodeMailOptions) {}

  get name(): string {
    return this.o.name;
  }

  async start(): Promise<void> {
    this.upSince = Date.now();
    await this.beat();
    this.sub = await this.listen();
    this.timers.push(setInterval(() => void this.beat(), Math.max(100, this.o.ttlMs / 4)));
    this.timers.push(setInterval(() => this.drain(), 1_000));
    this.drain();
  }

  private listen(): Promise<{ unlisten(): Promise<void> }> {
    return this.o.store.listen(nodeChannel(this.o.name), () => this.drain());
  }

  /** The database connection was replaced: the LISTEN went with the old one. */
  lostListen(): void {
    this.sub = undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await this.sending;
    await this.sub?.unlisten().catch(() => {});
    await this.o.store.leave(this.o.name).catch(() => {});
  }

  /**
   * Whether `name` is alive. A name not seen yet is looked up afresh first: a node that started after
   * this one's last heartbeat is alive, and must not be taken for a lost one (its shares claimed here).
   */
  async isLive(name: string): Promise<boolean> {
    if (name === this.o.name || this.live.has(name)) return true;
    await this.refresh();
    return this.live.has(name);
  }

  /** Whether this node has beaten without a gap for a whole ttl, so may judge another node dead. */
  private settled(now: number): boolean {
    return this.upSince !== undefined && now - this.upSince >= this.o.ttlMs;
  }

  /** The live node (not this one) whose tag a stream token carries; an unknown tag is looked up afresh. */
  async byTag(tag: Uint8Array): Promise<NodeRow | undefined> {
    const find = () => [...this.live.values()].find((n) => nodeTag(n.name).equals(tag));
    if (find()) return find();
    await this.refresh();
    return find();
  }

  /**
   * Reads the live nodes between heartbeats (adding, never removing: losing a node is the heartbeat's
   * call). The caller rides on a read that starts after its call (one under way may predate the node it
   * asks about); concurrent callers share it, and reads are at least REFRESH_MS apart, so connections
   * carrying made-up tags cannot turn into a query each.
   */
  private refresh(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.queued ??= (async () => {
      await this.reading;
      const wait = this.readAt + REFRESH_MS - Date.now();
      if (wait > 0) await Bun.sleep(wait);
      this.queued = undefined;
      this.reading = this.readLive();
      await this.reading;
    })();
    return this.queued;
  }

  private async readLive(): Promise<void> {
    this.readAt = Date.now();
    try {
      const rows = await this.o.store.all();
      const now = Date.now();
      // Unsettled (just started, or just back from an outage), an old heartbeat proves nothing yet.
      const fresh = (r: NodeRow) => now - r.heartbeatAt <= this.o.ttlMs || !this.settled(now);
      for (const r of rows) if (r.name !== this.o.name && fresh(r)) this.live.set(r.name, r);
    } catch (err) {
      log.warn(`reading the live nodes failed: ${errorMessage(err)}`);
    }
  }

  /** Sends in order: one sender's messages are written one after another, numbered. */
  send(to: string, body: unknown, failed?: (err: unknown) => void): void {
    const seq = ++this.seq;
    const text = JSON.stringify(body);
    this.sending = this.sending
      .then(() => this.o.store.send(this.o.name, to, seq, text, Date.now()))
      .catch((err) => {
        log.warn(`node mail to ${to} failed: ${errorMessage(err)}`);
        failed?.(err);
      });
  }

  private async beat(): Promise<void> {
    if (this.stopped) return;
    const now = Date.now();
    try {
      await this.o.store.beat(this.o.name, this.o.advertise, now);
      const rows = await this.o.store.all();
      this.upSince ??= now;
      // A LISTEN lost with a replaced pool is taken again once the database answers (the poll covers the gap).
      if (!this.sub && !this.stopped) this.sub = await this.listen().catch(() => undefined);
      const settled = this.settled(now);
      const alive = new Set<string>();
      for (const r of rows) {
        if (r.name === this.o.name || (settled && now - r.heartbeatAt > this.o.ttlMs)) continue;
        alive.add(r.name);
        this.live.set(r.name, r);
      }
      if (!settled) return;
      for (const name of [...this.live.keys()]) {
        if (alive.has(name)) continue;
        this.live.delete(name);
        log.warn(`node ${name} stopped beating; its clients will come back through the load balancer`);
        void this.o.store.dropMailTo(name).catch(() => {});
        this.o.onNodeLost(name);
      }
    } catch (err) {
      this.upSince = undefined;
      log.warn(`node heartbeat failed: ${errorMessage(err)}`);
    }
  }

  /** One drain at a time; a wake-up during a drain runs another after it. */
  private drain(): void {
    if (this.stopped) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = true;
    void (async () => {
      do {
        this.again = false;
        try {
          const batch = await this.o.store.take(this.o.name);
          if (batch.length >= 500) this.again = true;
          for (const m of batch) {
            try {
              this.o.onMail(m.from, JSON.parse(m.body));
            } catch (err) {
              log.warn(`node mail from ${m.from}: ${errorMessage(err)}`);
            }
          }
        } catch (err) {
          log.warn(`node mail: ${errorMessage(err)}`);
        }
      } while (this.again && !this.stopped);
      this.draining = false;
    })();
  }
}
