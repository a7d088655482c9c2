// The coordinator's rules: who may enrol, register, mint, ask, approve and open streams, and what
// survives a restart: shares and sessions live in the store, and their peers are expected back.
import { RefusedError, ProtocolError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { issueCert, readCsr } from "../pki/index.ts";
import { background, requireHost, type BrokerOptions, type LiveShare, type Peer, type Session } from "./state.ts";
import { generateNameplate, hashCode } from "../wire/codes.ts";
import { Consent, requestActors } from "./consent.ts";
import { checkEnrollToken, parseEnrollToken } from "./enroll.ts";
import { clock, SilentError } from "../wire/heartbeat.ts";
import { HOST_REMOVED, HostBook } from "./host-book.ts";
import { HOST_REMOVED_REASON, shareFails, type CheckContext, type Condition } from "./revalidate.ts";
import { PROTOCOL_VERSION, type ClientFrame, type FrameOf } from "../wire/protocol.ts";
import { SessionBook } from "./sessions.ts";
import { shareStatus } from "./share-status.ts";

export { newId, formatDuration, type Peer, type BrokerOptions } from "./state.ts";

type CF<T extends ClientFrame["t"]> = FrameOf<ClientFrame, T>;
const log = logger("coordinator");

export class Broker {
  private readonly shares = new Map<string, LiveShare>();
  /** New share ids whose registration awaits the store, with their host's key. */
  private readonly opening = new Map<string, string>();
  readonly sessions: SessionBook;
  readonly hosts: HostBook;
  private readonly consent: Consent;
  private readonly sweeper: ReturnType<typeof setInterval>;
  private closing = false;
  private lastPrune = 0;

  constructor(private readonly o: BrokerOptions) {
    this.sessions = new SessionBook(o);
    this.hosts = new HostBook(o);
    this.consent = new Consent(o, this.shares, this.sessions);
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
    return { shares: online, sharesAway: this.shares.size - online, sessions: this.sessions.all.size, requests: this.consent.pending.size, streams: this.sessions.streams, pendingStreams: this.sessions.pendingStreams };
  }

  /**
   * After a restart: open shares wait for their agents, open sessions for their guests, each for the
   * grace period; requests left waiting are denied and their codes given back.
   */
  async restore(): Promise<{ shares: number; sessions: number; voided: number }> {
    const now = Date.now();
    await this.hosts.load();
    for (const row of await this.o.store.openShares()) {
      this.shares.set(row.id, { ...row, offlineSince: now, approvers: new Set(), requests: new Set(), sessions: new Set() });
    }
    let sessions = 0;
    for (const row of await this.o.store.openSessions()) {
      const share = this.shares.get(row.shareId);
      if (!share) {
        background(this.o.store.closeSession(row.id, "its share was closed", now), "session close", log.warn);
        continue;
      }
      const s: Session = {
        id: row.id, share, detachedSince: now, restored: true, guestInfo: { name: row.guestName, addr: row.guestAddr, spki: row.guestSpki },
        target: row.target, openedAt: row.openedAt, streams: new Set(), streamCount: row.streams, up: row.bytesUp, down: row.bytesDown, lastActive: now, lastBytes: row.bytesUp + row.bytesDown,
      };
      this.sessions.add(s);
      sessions++;
    }
    const voided = await this.consent.voidLeftovers("the coordinator restarted before the host answered; the code works again, so the guest can simply ask again");
    return { shares: this.shares.size, sessions, voided };
  }

  async handle(peer: Peer, f: ClientFrame): Promise<void> {
    if (f.t === "hello") return this.hello(peer, f);
    if (!peer.helloed) throw new ProtocolError(`expected "hello" first, got "${f.t}"`);
    switch (f.t) {
      case "enroll": return this.enroll(peer, f);
      case "register": return this.register(peer, f);
      case "attach": return this.attach(peer, f);
      case "leave": return this.leave(peer, f);
      case "mint": return this.mint(peer, f);
      case "redeem": return this.consent.redeem(peer, f);
      case "request": return this.consent.request(peer, f);
      case "recheck": return this.consent.recheck(peer, f);
      case "decision": return this.consent.decide(peer, f);
      case "pake": return this.consent.relayPake(peer, f);
      case "confirm": return this.consent.relayConfirm(peer, f);
      case "open": return this.sessions.open(peer, f.sessionId, f.ref);
      case "resume": return this.sessions.resume(peer, f.sessionId);
      case "refuse": return this.sessions.refuse(peer, f);
      case "end": return this.sessions.end(peer, f.sessionId, this.shares, f.reason);
      case "status": return this.status(peer, f);
      case "ping": return peer.ch.send({ t: "pong" });
      case "pong": return;
      case "error": return; // a client's complaint; its connection closes on its own
    }
  }

  private hello(peer: Peer, f: CF<"hello">): void {
    if (peer.helloed) throw new ProtocolError("hello sent twice");
    if (f.v !== PROTOCOL_VERSION) {
      throw new ProtocolError(`protocol version ${f.v} is not supported; this coordinator (${this.o.version}) speaks version ${PROTOCOL_VERSION}`, "version");
    }
    // A removed host's connection that got past the listener's check (removed meanwhile) stops here.
    if (peer.host && !this.hosts.connected(peer, Date.now())) throw new ProtocolError(HOST_REMOVED, "host_removed");
    peer.helloed = true;
    const heartbeat = { pingMs: this.o.limits.heartbeatPingMs, deadMs: this.o.limits.heartbeatDeadMs };
    peer.ch.send({ t: "welcome", v: PROTOCOL_VERSION, server: this.o.version, ca: this.o.ca.certPem, heartbeat });
  }

  private async enroll(peer: Peer, f: CF<"enroll">): Promise<void> {
    const now = Date.now();
    this.consent.rateLimit(peer, "enrol");
    let tokenId: string;
    try {
      // Tokens come from the CA directory's file (`tessera ca --add-enroll-token`) or the store (`tessera admin enroll-token`).
      const minted = await this.o.store.getEnrollToken(parseEnrollToken(f.token).id);
      tokenId = checkEnrollToken(f.token, [...this.o.enrollRecords(), ...(minted ? [minted] : [])], now);
    } catch (e) {
      if (e instanceof RefusedError) this.consent.enrolRefused(peer, e.code);
      throw e;
    }
    const csr = await readCsr(f.csr).catch((e) => { throw new RefusedError("bad_csr", `certificate request refused: ${e.message}`); });
    if ((await this.o.store.hostStatus(csr.spki)) === "removed") {
      throw new RefusedError("host_removed", "this key belongs to a host the operator removed; enrol with a fresh key (`tessera link --token` makes one)");
    }
    if (!(await this.o.store.useEnrollToken(tokenId, csr.spki, now))) {
      this.consent.enrolRefused(peer, "token_used");
      throw new RefusedError("token_used", "this enrolment token was already used; ask the operator for a new one (`tessera admin enroll-token`)");
    }
    const cert = await issueCert({
      caCertPem: this.o.ca.certPem, caKeyPem: this.o.ca.keyPem, publicKey: csr.publicKey, commonName: f.name,
      uris: [`tessera://host/${encodeURIComponent(f.name)}`], usage: "both", now: new Date(now), validForSeconds: this.o.limits.hostCertSeconds,
    });
    await this.o.store.addHost(csr.spki, f.name, now);
    this.o.audit.append("host.enrol", { host: f.name, hostKey: csr.spki, addr: peer.addr, tokenId });
    peer.ch.send({ t: "enrolled", cert });
  }

  private async register(peer: Peer, f: CF<"register">): Promise<void> {
    const host = requireHost(peer);
    const known = this.shares.get(f.shareId);
    if (known && known.hostSpki !== host.spki) throw new RefusedError("share_taken", `share id "${f.shareId}" belongs to another host; pick another id`);
    if (known?.agent) throw new RefusedError("share_busy", `an agent is already serving share "${f.shareId}"`);
    const now = Date.now();
    const put = () => this.o.store.putShare({ id: f.shareId, hostSpki: host.spki, hostName: host.name, targets: f.targets }, now);
    if (known) await put();
    else {
      this.checkShareCaps(f.shareId, host);
      // Held while the store answers, so racing registrations cannot overshoot the caps.
      this.opening.set(f.shareId, host.spki);
      try {
        const row = await this.o.store.getShare(f.shareId);
        if (row && row.hostSpki !== host.spki) throw new RefusedError("share_taken", `share id "${f.shareId}" belongs to another host; pick another id`);
        await put();
      } finally {
        this.opening.delete(f.shareId);
      }
    }
    const share: LiveShare = known ?? { id: f.shareId, hostSpki: host.spki, hostName: host.name, targets: f.targets, approvers: new Set(), requests: new Set(), sessions: new Set() };
    share.targets = f.targets;
    share.requestsById = f.requestsById ?? false;
    share.agent = peer;
    share.offlineSince = undefined;
    share.awayReason = undefined;
    if (f.approver) share.approvers.add(peer);
    this.shares.set(share.id, share);
    this.o.audit.append(known ? "share.back" : "share.open", { shareId: share.id, host: host.name, hostKey: host.spki, targets: f.targets.join(","), addr: peer.addr, requestsById: f.requestsById || undefined });
    peer.ch.send({ t: "registered", shareId: share.id, targets: share.targets });
    // The agent forgot its sessions when it lost us; tell it again which guests it serves.
    for (const s of [...share.sessions]) {
      if (!share.targets.includes(s.target)) this.sessions.close(s, "the host no longer offers this target");
      else peer.ch.send({ t: "session", sessionId: s.id, shareId: share.id, target: s.target, guest: s.guestInfo });
    }
  }

  /** A new share must fit the coordinator's cap and its host's (shares being registered count too). */
  private checkShareCaps(shareId: string, host: { spki: string; name: string }): void {
    if (this.opening.has(shareId)) throw new RefusedError("share_busy", `an agent is already registering share "${shareId}"`);
    const { maxShares, maxSharesPerHost } = this.o.limits;
    if (this.shares.size + this.opening.size >= maxShares) throw new RefusedError("limit", `this coordinator has reached its share limit (${maxShares} shares); try again later`);
    let mine = 0;
    for (const s of this.shares.values()) if (s.hostSpki === host.spki) mine++;
    for (const spki of this.opening.values()) if (spki === host.spki) mine++;
    if (mine >= maxSharesPerHost) {
      throw new RefusedError("limit", `host "${host.name}" already holds ${mine} shares, the per-host cap; stop one of them (a share whose agent went away counts until its resume grace ends), or ask the coordinator's operator to raise --max-shares-per-host`);
    }
  }

  private attach(peer: Peer, f: CF<"attach">): void {
    const host = requireHost(peer);
    const share = this.shares.get(f.shareId);
    if (!share || share.hostSpki !== host.spki) {
      throw new RefusedError("no_share", `no agent of this host is serving share "${f.shareId}"; start \`tessera agent --share-id ${f.shareId} --allow HOST:PORT\` first`);
    }
    // Mint-only (`tessera mcp`): codes yes, answers never; the human's prompt stays the only approver.
    if (f.approve === false) (share.minters ??= new Set()).add(peer);
    else share.approvers.add(peer);
    peer.ch.send({ t: "registered", shareId: share.id, targets: share.targets });
  }

  private status(peer: Peer, f: CF<"status">): void {
    const host = requireHost(peer);
    const share = this.shares.get(f.shareId);
    if (!share || share.hostSpki !== host.spki) throw new RefusedError("no_share", `this host has no share "${f.shareId}" on this coordinator`);
    peer.ch.send(shareStatus(share, Date.now()));
  }

  /** A host stopping on purpose: the agent closes its share; an approver ends the sessions it approved. */
  private leave(peer: Peer, f: CF<"leave">): void {
    const share = this.shares.get(f.shareId);
    if (share?.minters?.delete(peer)) return peer.ch.send({ t: "left", shareId: f.shareId });
    if (!share || (share.agent !== peer && !share.approvers.has(peer))) throw new RefusedError("no_share", `you are not serving share "${f.shareId}"`);
    if (share.agent === peer) this.closeShare(share, "the host stopped sharing");
    else {
      share.approvers.delete(peer);
      for (const s of [...share.sessions]) if (s.approver === peer) this.sessions.close(s, "the host stopped sharing");
      for (const r of [...share.requests]) if (share.approvers.size === 0) this.consent.drop(r, "the host stopped approving", true);
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
    background(this.o.store.closeShare(share.id, Date.now()), "share close", log.warn);
  }

  private async mint(peer: Peer, f: CF<"mint">): Promise<void> {
    const share = this.shares.get(f.shareId);
    const mintOnly = !!share?.minters?.has(peer);
    if (!share || !(share.approvers.has(peer) || mintOnly)) throw new RefusedError("forbidden", `you are not approving share "${f.shareId}"`);
    const target = f.target ?? share.targets[0]!;
    if (!share.targets.includes(target)) throw new RefusedError("bad_target", `share "${share.id}" does not allow ${target} (allowed: ${share.targets.join(", ")})`);
    const now = Date.now();
    const max = this.o.limits.maxCodesPerShare;
    if ((await this.o.store.liveCodes(share.id, now)) >= max) {
      throw new RefusedError("limit", `share "${share.id}" already has ${max} unused codes, the per-share cap; use one or wait for some to expire (the coordinator's operator sets the cap with --max-codes-per-share)`);
    }
    // Only the nameplate is made here: the secret half is the minter's, and never comes this way.
    const expiresAt = now + this.o.limits.codeTtlMs;
    let nameplate = generateNameplate();
    for (let i = 0; !(await this.o.store.claimCode(hashCode(this.o.codeKey, nameplate), share.id, target, expiresAt, now)); i++) {
      if (i >= 20) throw new RefusedError("limit", "the coordinator could not find a free nameplate for a new code; try again shortly");
      nameplate = generateNameplate();
    }
    this.o.audit.append("code.mint", { shareId: share.id, host: share.hostName, target, expiresAt: new Date(expiresAt).toISOString(), mintOnly: mintOnly || undefined });
    peer.ch.send({ t: "code", shareId: share.id, nameplate, target, expiresAt });
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

  /** Operator revoke. */
  revoke(sessionId: string, by: string): boolean {
    return this.sessions.revoke(sessionId, by);
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
    for (const s of this.sessions.all.values()) if (s.guest === peer) this.sessions.detach(s, now, silent && `the guest's connection${silent}`);
    for (const share of this.shares.values()) {
      share.approvers.delete(peer);
      share.minters?.delete(peer);
      if (share.agent !== peer) continue;
      share.agent = undefined;
      share.offlineSince = now;
      share.awayReason = silent && `the host's agent${silent}`;
      this.o.audit.append("share.away", { shareId: share.id, host: share.hostName, graceMs: this.o.limits.resumeGraceMs, ...(share.awayReason ? { reason: share.awayReason } : {}) });
      for (const r of [...share.requests]) this.consent.drop(r, "the host went offline", true);
      for (const s of share.sessions) this.sessions.cutStreams(s, "the host's agent lost its connection to the coordinator");
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
    void this.hosts.poll(now).then((keys) => { if (!this.closing) for (const k of keys) this.cutHost(k); }, (err) => this.closing || log.warn(`store: host removals: ${errorMessage(err)}`));
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
    await this.sessions.flush();
  }
}
