// One node of a deployment: a share lives on the node its agent is connected to (shares.node), and a
// frame about it that reaches another node is carried there as node mail; the answers come back the same
// way. The node holding the share runs the usual broker rules on a stand-in peer, so consent, sessions and
// streams keep one owner each. A share whose node died is adopted by whichever node hears of it first.
import type { Socket } from "bun";
import { ProtocolError, TesseraError, RefusedError, errorMessage, type ErrorCode } from "../errors.ts";
import { logger } from "../log.ts";
import { SilentError } from "../wire/heartbeat.ts";
import { hashCode, normalizeNameplate } from "../wire/codes.ts";
import { DATA_MAGIC, type ClientFrame, type ServerFrame } from "../wire/protocol.ts";
import { cut, newEnd, pair, PIPE_HANDLERS, type End } from "../data/pipe.ts";
import { splitAddress } from "../wire/address.ts";
import type { Fence, Store } from "../store/store.ts";
import { Leases } from "./leases.ts";
import { isUnavailable, UNAVAILABLE } from "../store/pg-connection.ts";
import { NodeMail, nodeTag } from "./node-mail.ts";
import type { Peer } from "./peer.ts";

const log = logger("coordinator");
/** After another node says it is stopping, guests renew their channels again this much later (the balancer's check lags). */
const SPARES_AGAIN_MS = 1_500;

/** What the cluster needs of the broker. */
export interface ClusterHost {
  handle(peer: Peer, f: ClientFrame): Promise<void>;
  drop(peer: Peer, err?: Error): void;
  hasShare(id: string): boolean;
  /** Whether the frame is about a share held here, known without asking the database. */
  holdsHere(f: ClientFrame): boolean;
  /** Loads an open share and its open sessions from the store, waiting for their agent and guests. */
  /** `forAgent`: its agent registers here now; `deadNode`: the share's node is gone, so the streams it left open there are closed (orphans.ts). */
  adopt(shareId: string, o?: { forAgent?: boolean; deadNode?: string }): Promise<void>;
  /** Another node holds the share now: forget it here (the store keeps it) and let its clients reconnect. */
  release(shareId: string, reason?: string): void;
  /** Every guest of a session here opens a fresh data channel; the old one ends once its streams have. */
  renewChannels(): void;
  revokeLocal(sessionId: string, by: string): boolean;
}

export interface ClusterOptions {
  store: Store;
  name: string;
  advertise: string;
  ttlMs: number;
  /** The lease renew deadline (shorter than ttlMs; half of it by default). */
  leaseMs?: number;
  codeKey: Buffer;
}

type Msg =
  | { k: "f"; p: string; addr: string; host?: Peer["host"]; guest?: Peer["guest"]; f: ClientFrame }
  | { k: "s"; p: string; f: ServerFrame }
  | { k: "x"; p: string; fatal: boolean; code: string; message: string; ref?: string }
  | { k: "g"; p: string; silentSince?: number }
  | { k: "c"; p: string }
  | { k: "moved"; shareId: string }
  | { k: "draining" }
  | { k: "revoke"; sessionId: string; by: string };

interface Proxy {
  peer: Peer;
  from: string;
  queue: Promise<void>;
  /** Since when the stand-in has held no role here (the home side's share of the role sweep). */
  idleSince: number | undefined;
}

export class Cluster {
  readonly mail: NodeMail;
  readonly leases: Leases;
  readonly tag: Buffer;
  private host: ClusterHost | undefined;
  /** Edge side: this node's connections whose share lives on another node, and that node. */
  private readonly bound = new Map<string, { peer: Peer; node: string }>();
  /** Home side: stand-ins for connections held by other nodes, by "node/peer id". */
  private readonly proxies = new Map<string, Proxy>();

  constructor(private readonly o: ClusterOptions) {
    this.tag = nodeTag(o.name);
    this.mail = new NodeMail({
      store: o.store.nodes,
      name: o.name,
      advertise: o.advertise,
      ttlMs: o.ttlMs,
      onMail: (from, m) => this.onMail(from, m as Msg),
      onNodeLost: (n) => this.lost(n),
    });
    this.leases = new Leases({
      store: o.store.nodes,
      name: o.name,
      leaseMs: o.leaseMs ?? Math.floor(o.ttlMs / 2),
      letGo: (id, reason) => this.host?.release(id, reason),
    });
  }

  get name(): string {
    return this.o.name;
  }

  async start(host: ClusterHost): Promise<void> {
    this.host = host;
    if (this.o.store.pg) this.o.store.pg.onReset = () => this.mail.lostListen();
    await this.mail.start();
    this.leases.start();
  }

  async stop(): Promise<void> {
    this.leases.stop();
    await this.mail.stop();
  }

  /** Edge: true when the frame was sent to the node holding its share (the broker then does nothing). */
  async route(peer: Peer, f: ClientFrame): Promise<boolean> {
    const host = this.host!;
    if (f.t === "hello" || f.t === "ping" || f.t === "pong" || f.t === "error" || f.t === "enroll") return false;
    const b = this.bound.get(peer.id);
    if (b) {
      this.forward(peer, b.node, f);
      return true;
    }
    if (f.t === "register") {
      await this.takeOver(f.shareId);
      return false;
    }
    if (host.holdsHere(f)) return false;
    const shareId = await this.shareOf(f);
    if (!shareId || host.hasShare(shareId)) return false;
    const node = await this.o.store.nodes.shareNode(shareId);
    if (node === undefined) return false;
    if (node !== this.o.name && (await this.mail.isLive(node))) {
      this.bound.set(peer.id, { peer, node });
      this.forward(peer, node, f);
      return true;
    }
    // Its node is gone (or this node held it before a restart or a lapsed lease): hold it here until its
    // agent says where it is. Another node's share only once its lease has run out.
    const now = Date.now();
    const expired = node === this.o.name ? undefined : now;
    const epoch = await this.o.store.nodes.claimShare(shareId, this.o.name, this.leases.until(now), node, expired);
    if (epoch !== undefined) {
      this.leases.took(shareId, epoch);
      await host.adopt(shareId, { deadNode: node === this.o.name ? undefined : node });
    }
    return false;
  }

  /** An agent registering here: the share moves to this node, and the node that held it lets go. */
  private async takeOver(shareId: string): Promise<void> {
    const node = await this.o.store.nodes.shareNode(shareId);
    if (node === undefined || node === this.o.name) return;
    const epoch = await this.o.store.nodes.claimShare(shareId, this.o.name, this.leases.until(), node);
    if (epoch === undefined) return;
    this.leases.took(shareId, epoch);
    const live = await this.mail.isLive(node);
    if (live) this.mail.send(node, { k: "moved", shareId });
    // A live node closes its own streams as it lets go; a dead one's are closed here.
    await this.host!.adopt(shareId, { forAgent: true, deadNode: live ? undefined : node });
  }

  /** Marks a share as held here (a new registration), under a new lease epoch. */
  async claim(shareId: string): Promise<void> {
    const epoch = await this.o.store.nodes.claimShare(shareId, this.o.name, this.leases.until());
    if (epoch !== undefined) this.leases.took(shareId, epoch);
  }

  /** After a restart: the shares the store says this node holds, taken back under new epochs. */
  async reclaim(): Promise<Set<string>> {
    const mine = await this.o.store.nodes.reclaimMine(this.o.name, this.leases.until());
    for (const [id, epoch] of mine) this.leases.took(id, epoch);
    return new Set(mine.keys());
  }

  /** What a write about a share carries (see Fence): only this node's current lease on it matches. */
  fence(shareId: string): Fence {
    return this.leases.fence(shareId);
  }

  /** A graceful stop: the share is nobody's until a node claims it (which it may at once, the lease ended). */
  handOff(shareId: string): void {
    this.leases.dropped(shareId);
    void this.o.store.nodes
      .handOff(shareId, this.o.name)
      .catch((err) => log.warn(`handing over share ${shareId}: ${errorMessage(err)}`));
  }

  /** How many of this node's connections speak for shares on other nodes (a drain waits for them to move). */
  get boundCount(): number {
    return this.bound.size;
  }

  /**
   * A graceful stop: this node's connections that speak for shares on other nodes reconnect elsewhere,
   * and the other nodes hear of it (see "draining").
   */
  moveBound(moving: TesseraError): void {
    for (const { peer } of this.bound.values()) peer.ch.sendError?.(moving);
    for (const name of this.mail.live.keys()) this.mail.send(name, { k: "draining" });
  }

  /** The share left this node (closed, moved): its lease is not renewed here any more. */
  letGo(shareId: string): void {
    this.leases.dropped(shareId);
  }

  /** Operator revoke on any node: the session's node ends it. */
  async revoke(sessionId: string, by: string): Promise<boolean> {
    if (this.host!.revokeLocal(sessionId, by)) return true;
    const shareId = await this.o.store.nodes.sessionShare(sessionId);
    const node = shareId && (await this.o.store.nodes.shareNode(shareId));
    if (!node || node === this.o.name || !(await this.mail.isLive(node))) return false;
    this.mail.send(node, { k: "revoke", sessionId, by });
    return true;
  }

  /**
   * Edge: whether a connection of this node speaks for a share held on another node. Only that node knows
   * whether it holds a role there, so the edge's role sweep spares it and the home's sweep (below) judges it.
   */
  isBound(peer: Peer): boolean {
    return this.bound.has(peer.id);
  }

  /**
   * Home: the role sweep for stand-ins. One that has served, approved, asked for and held nothing here for
   * `limit` ms is failed as the listener fails a local idle connection; its edge node then closes the real one.
   */
  sweepStandIns(busy: ReadonlySet<Peer>, now: number, limit: number, fail: (p: Peer) => void): void {
    for (const px of this.proxies.values()) {
      const retrying = px.peer.retryingSince !== undefined && now - px.peer.retryingSince < limit;
      if (busy.has(px.peer) || retrying) px.idleSince = undefined;
      else if (px.idleSince === undefined) px.idleSince = now;
      else if (now - px.idleSince >= limit) fail(px.peer);
    }
  }

  /** Edge: one of this node's connections closed. */
  dropped(peer: Peer, err?: Error): void {
    const b = this.bound.get(peer.id);
    if (!b) return;
    this.bound.delete(peer.id);
    this.mail.send(b.node, { k: "g", p: peer.id, silentSince: err instanceof SilentError ? err.since : undefined });
  }

  /** Counts an attempt for the whole deployment; false once `perMinute` is passed this minute. */
  async allow(key: string, perMinute: number, now = Date.now()): Promise<boolean> {
    const win = Math.floor(now / 60_000) * 60_000;
    const n = await this.o.store.nodes.hit(key, win);
    if (n === 1) void this.o.store.nodes.pruneHits(win - 120_000).catch(() => {});
    return n <= perMinute;
  }

  /**
   * A data connection whose token this node did not issue: its first bytes name the node that did, and
   * the connection is carried there unchanged (preamble and all); the bytes stay the end-to-end TLS.
   */
  forwardData(sock: Socket<End>, head: Buffer): boolean {
    const tag = head.subarray(DATA_MAGIC.length, DATA_MAGIC.length + this.tag.length);
    if (tag.equals(this.tag)) return false;
    // Bytes that arrive meanwhile wait in the socket's early buffer (bounded), as before a splice.
    void this.mail.byTag(tag).then((node) => {
      if (!node || sock.data.closed) return cut(sock);
      const to = splitAddress(node.advertise, 8443, false);
      Bun.connect<End>({
        hostname: to.host,
        port: to.port,
        allowHalfOpen: true,
        data: newEnd(),
        socket: PIPE_HANDLERS,
      }).then(
        (out) => {
          out.setNoDelay(true);
          out.write(head);
          pair(sock, out);
        },
        (err) => {
          log.warn(`forwarding a stream to node ${node.name} (${node.advertise}) failed: ${errorMessage(err)}`);
          cut(sock);
        },
      );
    });
    return true;
  }

  /** A frame that could not be carried (the database is down) is answered here: retry, not a refusal. */
  private forward(peer: Peer, node: string, f: ClientFrame): void {
    this.mail.send(node, { k: "f", p: peer.id, addr: peer.addr, host: peer.host, guest: peer.guest, f }, (err) =>
      peer.ch.sendError?.(
        new RefusedError(
          "unavailable",
          isUnavailable(err) ? UNAVAILABLE : `could not reach the share's node: ${errorMessage(err)}`,
        ),
        "ref" in f ? f.ref : undefined,
      ),
    );
  }

  private async shareOf(f: ClientFrame): Promise<string | undefined> {
    const n = this.o.store.nodes;
    switch (f.t) {
      case "redeem": {
        // Only the code's nameplate comes this way (its secret half stays with guest and host).
        const nameplate = normalizeNameplate(f.code);
        return nameplate ? await n.codeShare(hashCode(this.o.codeKey, nameplate)) : undefined;
      }
      case "request":
      case "attach":
      case "attach-approver":
      case "mint":
      case "leave":
      case "status":
        return f.shareId;
      case "decision":
      case "recheck":
      case "pake":
      case "confirm":
      case "confirmed":
        return await n.requestShare(f.requestId);
      case "open":
      case "end":
      case "resume":
      case "refuse":
      case "hints":
      case "direct":
      case "direct-stream":
        return await n.sessionShare(f.sessionId);
      default:
        return undefined;
    }
  }

  private onMail(from: string, m: Msg): void {
    const host = this.host!;
    switch (m.k) {
      case "f": {
        const key = `${from}/${m.p}`;
        let px = this.proxies.get(key);
        if (!px) {
          px = { peer: this.standIn(from, m), from, queue: Promise.resolve(), idleSince: Date.now() };
          this.proxies.set(key, px);
        }
        const peer = px.peer;
        px.queue = px.queue.then(() => host.handle(peer, m.f)).catch((err) => this.answerError(peer, err));
        return;
      }
      case "g": {
        const px = this.proxies.get(`${from}/${m.p}`);
        if (!px) return;
        this.proxies.delete(`${from}/${m.p}`);
        px.queue.then(() =>
          host.drop(px.peer, m.silentSince ? new SilentError(m.silentSince, Date.now() - m.silentSince) : undefined),
        );
        return;
      }
      case "s":
        return this.bound.get(m.p)?.peer.ch.send(m.f);
      case "c":
        return this.bound.get(m.p)?.peer.ch.close?.();
      case "x": {
        const b = this.bound.get(m.p);
        if (!b) return;
        const err = m.fatal
          ? new ProtocolError(m.message, m.code as ErrorCode)
          : new RefusedError(m.code as ErrorCode, m.message, { ref: m.ref });
        if (m.fatal) b.peer.ch.fail(err);
        else b.peer.ch.sendError?.(err, m.ref);
        return;
      }
      case "moved":
        return host.release(m.shareId);
      case "draining": {
        // Channels whose data connections pass through the stopping node would be cut when it exits: the
        // guests open new ones through the balancer, which no longer sends anything there (a moment later),
        // and move their new streams to them; the old channels end once their streams have.
        log.info(`coordinator node ${from} is stopping: guests renew their data channels`);
        host.renewChannels();
        setTimeout(() => host.renewChannels(), SPARES_AGAIN_MS);
        return;
      }
      case "revoke":
        return void host.revokeLocal(m.sessionId, m.by);
    }
  }

  /** Home: the peer as the broker sees it; what it is sent goes back to the node holding the connection. */
  private standIn(from: string, m: Extract<Msg, { k: "f" }>): Peer {
    const p = m.p;
    const key = `${from}/${p}`;
    const peer: Peer = {
      id: key,
      addr: m.addr,
      host: m.host,
      guest: m.guest,
      helloed: true,
      ch: {
        send: (f) => this.mail.send(from, { k: "s", p, f }),
        fail: (err) => {
          this.mail.send(from, { k: "x", p, fatal: true, code: err.code, message: err.message });
          if (this.proxies.delete(key)) this.host!.drop(peer, err);
        },
        sendError: (err, ref) =>
          this.mail.send(from, { k: "x", p, fatal: false, code: err.code, message: err.message, ref }),
        close: () => this.mail.send(from, { k: "c", p }),
      },
    };
    return peer;
  }

  /** As the Channel answers a frame handler's error: refusals keep the connection, the rest close it. */
  private answerError(peer: Peer, err: unknown): void {
    if (err instanceof ProtocolError) peer.ch.fail(err);
    else if (err instanceof TesseraError) peer.ch.sendError?.(err, err instanceof RefusedError ? err.ref : undefined);
    else {
      log.error(`internal error handling a forwarded frame: ${errorMessage(err)}`);
      peer.ch.sendError?.(new TesseraError("internal", "internal error; see the coordinator's log"));
    }
  }

  /** A node stopped beating: connections it held here are gone, and clients bound to it reconnect. */
  private lost(node: string): void {
    for (const [key, px] of [...this.proxies]) {
      if (px.from !== node) continue;
      this.proxies.delete(key);
      this.host!.drop(px.peer);
    }
    for (const [id, b] of [...this.bound]) {
      if (b.node !== node) continue;
      this.bound.delete(id);
      b.peer.ch.close?.();
    }
  }
}
