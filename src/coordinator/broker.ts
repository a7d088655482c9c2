// The coordinator's rules: who may enrol, register, mint, ask, approve and open streams, and what
// survives a restart: shares and sessions live in the store, and their peers are expected back.
import { RefusedError, ProtocolError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { background, type BrokerOptions, type LiveShare, type Peer } from "./state.ts";
import { Consent, requestActors } from "./consent.ts";
import { enrollHost } from "./enrolment.ts";
import { clock, SilentError } from "../wire/heartbeat.ts";
import { HOST_REMOVED, HostBook } from "./host-book.ts";
import { HOST_REMOVED_REASON, shareFails, type CheckContext, type Condition } from "./revalidate.ts";
import { PROTOCOL_VERSION, type ClientFrame, type FrameOf } from "../wire/protocol.ts";
import { SessionBook } from "./sessions.ts";
import { agentBack, agentGone } from "./direct.ts";
import { ShareDesk } from "./share-desk.ts";
import { restoredSession } from "./restore.ts";
import { closeOrphans } from "./orphans.ts";
import { isUnavailable, UNAVAILABLE } from "../store/pg-connection.ts";

export { newId, formatDuration, type Peer, type BrokerOptions } from "./state.ts";

type CF<T extends ClientFrame["t"]> = FrameOf<ClientFrame, T>;
const log = logger("coordinator");
/** How long a stream open waits for the agent of a share being taken over for it (see adopt). */
const AGENT_ARRIVAL_MS = 5_000;
/** Told to clients of a node stopping gracefully (an error frame with code "moving": see errors.ts). */
export const MOVING =
  "this coordinator node is stopping; reconnect through the load balancer (streams under way go on)";

export class Broker {
  private readonly shares = new Map<string, LiveShare>();
  /** New share ids whose registration awaits the store, with their host's key. */
  readonly sessions: SessionBook;
  readonly hosts: HostBook;
  private readonly consent: Consent;
  private readonly desk: ShareDesk;
  private readonly sweeper: ReturnType<typeof setInterval>;
  private closing = false;
  private draining = false;
  private lastPrune = 0;
  /** Set while the coordinator restores its state with its ports already bound: frames wait for it (hold, ready). */
  private gate: { promise: Promise<void>; open: () => void } | undefined;

  constructor(private readonly o: BrokerOptions) {
    this.sessions = new SessionBook(o);
    this.hosts = new HostBook(o);
    this.consent = new Consent(o, this.shares, this.sessions);
    this.desk = new ShareDesk(o, this.shares, this.sessions);
    this.sweeper = setInterval(() => this.revalidate(), o.limits.revalidateMs);
  }

  /** The shares open now, by id (the operator's view reads them). */
  get liveShares(): ReadonlyMap<string, LiveShare> {
    return this.shares;
  }

  get splicer() {
    return this.sessions.splicer;
  }

  get counts() {
    const online = [...this.shares.values()].filter((s) => s.agent).length;
    return {
      shares: online,
      sharesAway: this.shares.size - online,
      sessions: this.sessions.all.size,
      requests: this.consent.pending.size,
      streams: this.sessions.streams,
      pendingStreams: this.sessions.pendingStreams,
      channels: this.sessions.channels,
    };
  }

  /**
   * After a restart: open shares wait for their agents, open sessions for their guests, each for the
   * grace period; requests left waiting are denied and their codes given back.
   */
  async restore(): Promise<{ shares: number; sessions: number; voided: number }> {
    const now = Date.now();
    await this.hosts.load();
    const mine = this.o.cluster && (await this.o.cluster.reclaim());
    for (const row of await this.o.store.openShares()) {
      if (mine && !mine.has(row.id)) continue;
      this.shares.set(row.id, {
        ...row,
        offlineSince: now,
        approvers: new Set(),
        requests: new Set(),
        sessions: new Set(),
      });
    }
    let sessions = 0;
    for (const row of await this.o.store.openSessions()) {
      const share = this.shares.get(row.shareId);
      if (!share) {
        // Another node's share: not ours to judge.
        if (mine) continue;
        background(this.o.store.closeSession(row.id, "its share was closed", now), "session close", log.warn);
        continue;
      }
      this.sessions.add(restoredSession(row, share, now));
      sessions++;
    }
    const voided = await this.consent.voidLeftovers(
      "the coordinator restarted before the host answered; the code works again, so the guest can simply ask again",
    );
    return { shares: this.shares.size, sessions, voided };
  }

  /** Frames wait from now until ready(): the ports are bound before the state is restored. */
  hold(): void {
    let open!: () => void;
    const promise = new Promise<void>((r) => {
      open = r;
    });
    this.gate = { promise, open };
  }

  ready(): void {
    this.gate?.open();
    this.gate = undefined;
  }

  async handle(peer: Peer, f: ClientFrame): Promise<void> {
    if (this.gate) await this.gate.promise;
    if (f.t === "hello") return this.hello(peer, f);
    if (!peer.helloed) throw new ProtocolError(`expected "hello" first, got "${f.t}"`);
    try {
      // One node of several: a frame about a share another node holds goes there (cluster.ts).
      if (this.o.cluster && (await this.o.cluster.route(peer, f))) return;
      return await this.handleLocal(peer, f);
    } catch (err) {
      // The database down is not a refusal: the client is told to retry, and its connection stays.
      if (!isUnavailable(err)) throw err;
      peer.retryingSince = Date.now();
      if (f.t === "redeem" || f.t === "request") this.consent.refundAttempt(peer);
      throw new RefusedError("unavailable", UNAVAILABLE, { ref: "ref" in f ? f.ref : undefined });
    }
  }

  /** The rules, on this node (also for frames other nodes carried here). */
  async handleLocal(peer: Peer, f: ClientFrame): Promise<void> {
    if (f.t === "hello") return this.hello(peer, f);
    switch (f.t) {
      case "enroll":
        return enrollHost(this.o, this.consent, peer, f);
      case "register":
        return this.desk.register(peer, f);
      case "attach":
        return this.desk.attach(peer, f);
      case "attach-approver":
        return this.desk.attachApprover(peer, f);
      case "leave":
        return this.leave(peer, f);
      case "mint":
        return this.desk.mint(peer, f);
      case "redeem":
        return this.consent.redeem(peer, f);
      case "request":
        return this.consent.request(peer, f);
      case "recheck":
        return this.consent.recheck(peer, f);
      case "decision":
        return this.consent.decide(peer, f);
      case "pake":
        return this.consent.relayPake(peer, f);
      case "confirm":
        return this.consent.relayConfirm(peer, f);
      case "confirmed":
        return this.consent.relayConfirmed(peer, f);
      case "open":
        return this.sessions.open(peer, f);
      case "resume":
        return this.sessions.resume(peer, f.sessionId);
      case "refuse":
        return this.sessions.refuse(peer, f);
      case "hints":
        return this.sessions.direct.hints(peer, f);
      case "direct":
        return this.sessions.direct.probed(peer, f);
      case "direct-stream":
        return this.sessions.direct.report(peer, f);
      case "end":
        return this.sessions.end(peer, f.sessionId, this.shares, f.reason);
      case "status":
        return this.desk.status(peer, f);
      case "ping":
        return peer.ch.send({ t: "pong" });
      case "pong":
        return;
      case "error":
        return; // a client's complaint; its connection closes on its own
    }
  }

  private hello(peer: Peer, f: CF<"hello">): void {
    if (peer.helloed) throw new ProtocolError("hello sent twice");
    if (f.v !== PROTOCOL_VERSION) {
      throw new ProtocolError(
        `protocol version ${f.v} is not supported; this coordinator (${this.o.version}) speaks version ${PROTOCOL_VERSION}`,
        "version",
      );
    }
    // A removed host's connection that got past the listener's check (removed meanwhile) stops here.
    if (peer.host && !this.hosts.connected(peer, Date.now())) throw new ProtocolError(HOST_REMOVED, "host_removed");
    peer.helloed = true;
    const heartbeat = { pingMs: this.o.limits.heartbeatPingMs, deadMs: this.o.limits.heartbeatDeadMs };
    peer.ch.send({ t: "welcome", v: PROTOCOL_VERSION, server: this.o.version, ca: this.o.ca.certPem, heartbeat });
  }

  /** A host stopping on purpose: the agent closes its share; an approver ends the sessions it approved. */
  private leave(peer: Peer, f: CF<"leave">): void {
    const share = this.shares.get(f.shareId);
    if (share?.minters?.delete(peer)) return peer.ch.send({ t: "left", shareId: f.shareId });
    if (!share || (share.agent !== peer && !share.approvers.has(peer)))
      throw new RefusedError("no_share", `you are not serving share "${f.shareId}"`);
    if (share.agent === peer) this.closeShare(share, "the host stopped sharing");
    else {
      share.approvers.delete(peer);
      for (const s of [...share.sessions]) if (s.approver === peer) this.sessions.close(s, "the host stopped sharing");
      for (const r of [...share.requests])
        if (share.approvers.size === 0) this.consent.drop(r, "the host stopped approving", true);
    }
    peer.ch.send({ t: "left", shareId: f.shareId });
  }

  private closeShare(share: LiveShare, reason: string, condition?: Condition): void {
    if (!this.shares.has(share.id)) return;
    for (const r of [...share.requests]) this.consent.drop(r, reason, true);
    for (const s of [...share.sessions]) this.sessions.close(s, reason, condition);
    this.shares.delete(share.id);
    // Approvers in other terminals hear it, rather than keep showing codes that no longer work.
    for (const a of share.approvers) if (a !== share.agent) a.ch.send({ t: "left", shareId: share.id });
    this.o.audit.append("share.close", { shareId: share.id, host: share.hostName, reason, condition });
    const fence = this.o.cluster?.fence(share.id);
    this.o.cluster?.letGo(share.id);
    background(this.o.store.closeShare(share.id, Date.now(), fence), "share close", log.warn);
  }

  /** Connections doing something: serving or approving a share, waiting on a request, or holding a session. */
  peersWithRole(): Set<Peer> {
    const busy = new Set<Peer>();
    for (const share of this.shares.values()) {
      if (share.agent) busy.add(share.agent);
      for (const a of share.approvers) busy.add(a);
      for (const m of share.minters ?? []) busy.add(m);
    }
    for (const r of this.consent.pending.values()) busy.add(r.guest);
    for (const s of this.sessions.all.values()) if (s.guest) busy.add(s.guest);
    return busy;
  }

  /** Every guest here opens a fresh data channel (the old one ends once its streams have): see cluster.ts "draining". */
  renewChannels(): void {
    for (const s of this.sessions.all.values()) if (s.guest) agentBack(s);
  }

  /** Operator revoke (on any node: the session's own node ends it). */
  revoke(sessionId: string, by: string): boolean | Promise<boolean> {
    return this.o.cluster ? this.o.cluster.revoke(sessionId, by) : this.sessions.revoke(sessionId, by);
  }

  revokeLocal(sessionId: string, by: string): boolean {
    return this.sessions.revoke(sessionId, by);
  }

  hasShare(id: string): boolean {
    return this.shares.has(id);
  }

  /**
   * Whether a frame is about a share this node holds, from memory alone: a live session's stream opens,
   * a waiting request's answers and a resume need no database round trip, so they go on while it is down.
   */
  holdsHere(f: ClientFrame): boolean {
    if ("sessionId" in f && typeof f.sessionId === "string") return this.sessions.all.has(f.sessionId);
    if ("requestId" in f && typeof f.requestId === "string") return this.consent.pending.has(f.requestId);
    if ("shareId" in f && typeof f.shareId === "string" && f.t !== "register") return this.shares.has(f.shareId);
    return false;
  }

  /**
   * One node of several took over a share whose node died or let go: it waits for its agent and guests
   * here. `forAgent`: its agent is registering here right now (stream opens wait for it, briefly).
   * `deadNode`: the share's node is gone, so the streams it left open there are closed (orphans.ts).
   */
  async adopt(shareId: string, o: { forAgent?: boolean; deadNode?: string } = {}): Promise<void> {
    const forAgent = o.forAgent ?? false;
    if (this.shares.has(shareId)) return;
    const row = await this.o.store.getShare(shareId);
    if (!row || this.shares.has(shareId)) return;
    const now = Date.now();
    const share: LiveShare = {
      ...row,
      offlineSince: now,
      approvers: new Set(),
      requests: new Set(),
      sessions: new Set(),
    };
    if (forAgent) {
      const { promise, resolve } = Promise.withResolvers<void>();
      const t = setTimeout(resolve, AGENT_ARRIVAL_MS);
      share.arriving = promise.then(() => {
        clearTimeout(t);
        share.arriving = undefined;
      });
      share.agentArrived = resolve;
    }
    this.shares.set(shareId, share);
    // A dead node's streams of this share get their close lines, and its sessions' totals count them.
    if (o.deadNode !== undefined) await closeOrphans(this.o.store, this.o.audit, { shareId, node: o.deadNode });
    let sessions = 0;
    for (const s of await this.o.store.openSessions()) {
      if (s.shareId !== shareId || this.sessions.all.has(s.id)) continue;
      this.sessions.add(restoredSession(s, share, now));
      sessions++;
    }
    this.o.audit.append("share.adopt", { shareId, host: row.hostName, sessions, node: this.o.cluster?.name });
    // CALL SITE for issue 26 item 4 (branch faults-audit): the streams the dead node left open get their
    // close lines here, e.g. closeOrphans(shareId, ...), once that function lands in src/coordinator/.
  }

  /**
   * A graceful stop of one node of several (see Coordinator.drain): each share's agent is told to move
   * (its registration on another node takes the share over, and this node then releases it below); a
   * share whose agent is away is handed over at once; connections here that speak for shares on other
   * nodes are told to move too. Streams under way are left to run.
   */
  drain(): void {
    this.draining = true;
    const moving = new RefusedError("moving", MOVING);
    for (const share of [...this.shares.values()]) {
      if (share.agent) share.agent.ch.sendError?.(moving);
      else {
        this.o.cluster?.handOff(share.id);
        this.release(share.id, MOVING);
      }
    }
    this.o.cluster?.moveBound(moving);
  }

  /**
   * Another node holds the share now, or this node's lease on it lapsed: it leaves this node's memory (not
   * the store) and its clients reconnect (through the balancer, to whichever node holds it). While this
   * node is stopping gracefully, streams under way run on and the clients are told to move, not cut.
   */
  release(shareId: string, reason = "the host's agent moved to another coordinator node"): void {
    this.o.cluster?.letGo(shareId);
    const share = this.shares.get(shareId);
    if (!share) return;
    for (const r of [...share.requests]) this.consent.drop(r, `${reason}; ask again`, true);
    const peers = new Set<Peer>([...share.approvers, ...(share.minters ?? [])]);
    if (share.agent) peers.add(share.agent);
    for (const s of [...share.sessions]) {
      if (s.guest) peers.add(s.guest);
      this.sessions.release(s, reason, this.draining);
    }
    this.shares.delete(shareId);
    this.o.audit.append("share.moved", { shareId, host: share.hostName, reason });
    const moving = new RefusedError("moving", MOVING);
    for (const p of peers) {
      if (this.draining && p.ch.sendError) p.ch.sendError(moving);
      else p.ch.close ? p.ch.close() : p.ch.fail(new RefusedError("host_offline", `${reason}; reconnect`));
    }
  }

  /**
   * The operator removed a host (its row in the store already says so): its shares close now, their
   * sessions with them, and its connections are refused with a reason no reconnect can fix.
   */
  removeHost(spki: string): { shares: number; sessions: number } {
    if (!this.hosts.markRemoved(spki)) return { shares: 0, sessions: 0 };
    return this.cutHost(spki);
  }

  private cutHost(spki: string): { shares: number; sessions: number } {
    const mine = [...this.shares.values()].filter((sh) => sh.hostSpki === spki);
    const sessions = mine.reduce((n, sh) => n + sh.sessions.size, 0);
    for (const share of mine) this.closeShare(share, HOST_REMOVED_REASON, "host_removed");
    for (const peer of this.hosts.connections(spki)) peer.ch.fail(new RefusedError("host_removed", HOST_REMOVED));
    return { shares: mine.length, sessions };
  }

  /**
   * A connection went away. Requests it made end (their codes come back); a guest's session and an
   * agent's share wait out the grace period for it to return, with their streams cut now.
   */
  drop(peer: Peer, err?: Error): void {
    if (this.closing) return;
    this.o.cluster?.dropped(peer, err);
    const now = Date.now();
    // A connection that went silent (its peer vanished without a word) says when, in the lines that follow.
    const silent = err instanceof SilentError ? ` went silent at ${clock(err.since)}` : undefined;
    this.hosts.disconnected(peer, now);
    for (const req of [...this.consent.pending.values()]) {
      if (req.guest === peer) {
        this.o.audit.append("request.withdraw", requestActors(req));
        this.consent.drop(req, "withdrawn", true);
      }
    }
    for (const s of this.sessions.all.values())
      if (s.guest === peer) this.sessions.detach(s, now, silent && `the guest's connection${silent}`);
    for (const share of this.shares.values()) {
      share.approvers.delete(peer);
      share.minters?.delete(peer);
      if (share.agent !== peer) continue;
      share.agent = undefined;
      share.offlineSince = now;
      share.awayReason = silent && `the host's agent${silent}`;
      this.o.audit.append("share.away", {
        shareId: share.id,
        host: share.hostName,
        graceMs: this.o.limits.resumeGraceMs,
        ...(share.awayReason ? { reason: share.awayReason } : {}),
      });
      for (const r of [...share.requests]) this.consent.drop(r, "the host went offline", true);
      for (const s of share.sessions) {
        this.sessions.cutStreams(s, "the host's agent lost its connection to the coordinator");
        agentGone(s);
      }
    }
  }

  /**
   * Every few moments (--revalidate-interval): each share and session is checked again (revalidate.ts) and
   * the first failed condition ends it; host removals made on another node are picked up from the store.
   */
  revalidate(now = Date.now()): void {
    const c: CheckContext = { now, limits: this.o.limits, removed: this.hosts.removed, shares: this.shares };
    for (const share of [...this.shares.values()]) {
      const failed = shareFails(share, c);
      if (failed) this.closeShare(share, failed.reason, failed.condition);
    }
    this.sessions.revalidate(c);
    void this.hosts.poll(now).then(
      (keys) => {
        if (!this.closing) for (const k of keys) this.cutHost(k);
      },
      (err) => this.closing || log.warn(`store: host removals: ${errorMessage(err)}`),
    );
    if (now - this.lastPrune >= 60_000) {
      this.lastPrune = now;
      background(this.o.store.pruneCodes(now), "code prune", log.warn);
    }
  }

  /** Shutting down keeps shares and sessions in the store for the next start; waiting requests are denied. */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.sessions.stop();
    this.closing = true;
    await this.consent.shutdown("the coordinator is shutting down; the code works again, ask again in a moment");
    for (const s of this.sessions.all.values()) this.sessions.cutStreams(s, "the coordinator is shutting down");
    // No waiting for agents' final counts on the way out: every line is written with what is known.
    this.sessions.direct.settleAll();
    await this.sessions.flush();
  }
}
