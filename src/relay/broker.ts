// The coordinator's rules: who may register, mint, ask, approve and open streams, and what each
// step writes to the audit log before anyone hears about it.
import { randomBytes } from "node:crypto";
import { RefusedError, ProtocolError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { AuditLog } from "../audit/log.ts";
import type { Store } from "../store/store.ts";
import { issueCert, readCsr } from "../pki/index.ts";
import type { Channel } from "./channel.ts";
import { generateCode, hashCode, normalizeCode, formatCode } from "./codes.ts";
import { checkEnrollToken, type EnrollRecord } from "./enroll.ts";
import { RateLimiter, type Limits } from "./limits.ts";
import { PROTOCOL_VERSION, type ClientFrame, type FrameOf, type ServerFrame } from "./protocol.ts";
import { Splicer, type Stream } from "./splice.ts";

const log = logger("coordinator");

type CF<T extends ClientFrame["t"]> = FrameOf<ClientFrame, T>;

export interface Peer {
  readonly id: string;
  readonly addr: string;
  readonly ch: Channel<ClientFrame, ServerFrame>;
  /** Set when the peer presented an enrolled host certificate. */
  readonly host?: { spki: string; name: string };
  helloed: boolean;
}

interface LiveShare {
  id: string;
  hostSpki: string;
  hostName: string;
  targets: string[];
  agent: Peer;
  approvers: Set<Peer>;
  requests: Set<Request>;
  sessions: Set<Session>;
}

interface Request {
  id: string;
  share: LiveShare;
  guest: Peer;
  guestInfo: { name: string; addr: string; spki: string };
  publicKey: CryptoKey;
  target: string;
  timer: ReturnType<typeof setTimeout>;
}

interface Session {
  id: string;
  share: LiveShare;
  guest: Peer;
  approver: Peer;
  guestInfo: { name: string; addr: string; spki: string };
  target: string;
  streams: Set<Stream>;
  streamCount: number;
  up: number;
  down: number;
  lastActive: number;
  lastBytes: number;
}

export interface BrokerOptions {
  ca: { certPem: string; keyPem: string };
  store: Store;
  audit: AuditLog;
  limits: Limits;
  codeKey: Buffer;
  version: string;
  enrollRecords: () => EnrollRecord[];
}

export class Broker {
  private readonly shares = new Map<string, LiveShare>();
  private readonly requests = new Map<string, Request>();
  private readonly sessions = new Map<string, Session>();
  private readonly redeemLimiter: RateLimiter;
  private streamTotal = 0;
  readonly splicer: Splicer;
  private readonly sweeper: ReturnType<typeof setInterval>;

  constructor(private readonly o: BrokerOptions) {
    this.redeemLimiter = new RateLimiter(o.limits.redeemPerMinute);
    this.splicer = new Splicer({ onSpliced: () => {}, onClosed: (s, r) => this.onStreamClosed(s, r) }, o.limits.streamTokenTtlMs);
    this.sweeper = setInterval(() => this.sweepIdle(), Math.min(30_000, Math.max(250, o.limits.idleTimeoutMs / 4)));
  }

  get counts() {
    return { shares: this.shares.size, sessions: this.sessions.size, requests: this.requests.size, streams: this.streamTotal };
  }

  async handle(peer: Peer, f: ClientFrame): Promise<void> {
    if (f.t === "hello") return this.hello(peer, f);
    if (!peer.helloed) throw new ProtocolError(`expected "hello" first, got "${f.t}"`);
    switch (f.t) {
      case "enroll": return this.enroll(peer, f);
      case "register": return this.register(peer, f);
      case "attach": return this.attach(peer, f);
      case "mint": return this.mint(peer, f);
      case "redeem": return this.redeem(peer, f);
      case "request": return this.request(peer, f);
      case "decision": return this.decide(peer, f);
      case "open": return this.open(peer, f);
      case "end": return this.endByPeer(peer, f);
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
    peer.helloed = true;
    peer.ch.send({ t: "welcome", v: PROTOCOL_VERSION, server: this.o.version, ca: this.o.ca.certPem });
  }

  private async enroll(peer: Peer, f: CF<"enroll">): Promise<void> {
    const now = Date.now();
    if (!this.redeemLimiter.allow(`enroll:${ip(peer.addr)}`, now)) throw new RefusedError("rate_limited", "too many attempts from this address; wait a minute");
    const tokenId = checkEnrollToken(f.token, this.o.enrollRecords(), now);
    const csr = await readCsr(f.csr).catch((e) => { throw new RefusedError("bad_csr", `certificate request refused: ${e.message}`); });
    if (!(await this.o.store.useEnrollToken(tokenId, csr.spki, now))) {
      throw new RefusedError("token_used", "this enrolment token was already used; ask the operator for a new one (`tessera ca --dir DIR --add-enroll-token`)");
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
    const live = this.shares.get(f.shareId);
    if (live && live.hostSpki !== host.spki) throw new RefusedError("share_taken", `share id "${f.shareId}" belongs to another host; pick another id`);
    if (live) throw new RefusedError("share_busy", `an agent is already serving share "${f.shareId}"`);
    const row = await this.o.store.getShare(f.shareId);
    if (row && row.hostSpki !== host.spki) throw new RefusedError("share_taken", `share id "${f.shareId}" belongs to another host; pick another id`);
    if (this.shares.size >= this.o.limits.maxShares) throw new RefusedError("limit", "this coordinator has reached its share limit; try again later");
    const now = Date.now();
    await this.o.store.putShare({ id: f.shareId, hostSpki: host.spki, targets: f.targets }, now);
    const share: LiveShare = { id: f.shareId, hostSpki: host.spki, hostName: host.name, targets: f.targets, agent: peer, approvers: new Set(), requests: new Set(), sessions: new Set() };
    if (f.approver) share.approvers.add(peer);
    this.o.audit.append("share.open", { shareId: share.id, host: host.name, hostKey: host.spki, targets: f.targets.join(","), addr: peer.addr });
    this.shares.set(share.id, share);
    peer.ch.send({ t: "registered", shareId: share.id, targets: share.targets });
  }

  private attach(peer: Peer, f: CF<"attach">): void {
    const host = requireHost(peer);
    const share = this.shares.get(f.shareId);
    if (!share || share.hostSpki !== host.spki) {
      throw new RefusedError("no_share", `no agent of this host is serving share "${f.shareId}"; start \`tessera agent --share-id ${f.shareId} --allow HOST:PORT\` first`);
    }
    share.approvers.add(peer);
    peer.ch.send({ t: "registered", shareId: share.id, targets: share.targets });
  }

  private async mint(peer: Peer, f: CF<"mint">): Promise<void> {
    const share = this.approverShare(peer, f.shareId);
    const target = f.target ?? share.targets[0]!;
    if (!share.targets.includes(target)) throw new RefusedError("bad_target", `share "${share.id}" does not allow ${target} (allowed: ${share.targets.join(", ")})`);
    const code = generateCode();
    const expiresAt = Date.now() + this.o.limits.codeTtlMs;
    await this.o.store.putCode(hashCode(this.o.codeKey, normalizeCode(code)!), share.id, target, expiresAt);
    this.o.audit.append("code.mint", { shareId: share.id, host: share.hostName, target, expiresAt: new Date(expiresAt).toISOString() });
    peer.ch.send({ t: "code", shareId: share.id, code, target, expiresAt });
  }

  private async redeem(peer: Peer, f: CF<"redeem">): Promise<void> {
    this.rateLimit(peer);
    const code = normalizeCode(f.code);
    if (!code) throw new RefusedError("bad_code", "that is not a tessera code (expected 8 letters and digits, like K7QF-M2XD)");
    const hash = hashCode(this.o.codeKey, code);
    const now = Date.now();
    const row = await this.o.store.getCode(hash);
    const fail = (why: string, message: string) => {
      this.o.audit.append("redeem.fail", { addr: peer.addr, guest: f.name, reason: why, shareId: row?.shareId });
      return new RefusedError(`code_${why}`, message);
    };
    if (!row) throw fail("unknown", `code ${formatCode(code)} is not known to this coordinator; check it with the host`);
    if (row.usedAt !== null) throw fail("used", "this code was already used; codes work once, ask the host for a new one");
    if (row.expiresAt <= now) throw fail("expired", `this code expired at ${new Date(row.expiresAt).toISOString()}; ask the host for a new one`);
    if (!(await this.o.store.useCode(hash, now))) throw fail("used", "this code was already used; codes work once, ask the host for a new one");
    const share = this.shares.get(row.shareId);
    if (!share) throw fail("offline", "the host who made this code is not connected right now");
    await this.ask(peer, share, row.target, f, "code");
  }

  private async request(peer: Peer, f: CF<"request">): Promise<void> {
    this.rateLimit(peer);
    const share = this.shares.get(f.shareId);
    if (!share) throw new RefusedError("no_share", `share "${f.shareId}" is not online`);
    if (!share.targets.includes(f.target)) throw new RefusedError("bad_target", `share "${share.id}" does not offer ${f.target}`);
    await this.ask(peer, share, f.target, f, "share-id");
  }

  private async ask(peer: Peer, share: LiveShare, target: string, f: { csr: string; name: string; reason: string }, via: string): Promise<void> {
    if (share.approvers.size === 0) throw new RefusedError("no_approver", `nobody is approving requests for share "${share.id}" right now; ask the host to run \`tessera share --share-id ${share.id}\``);
    if (share.requests.size >= this.o.limits.maxPendingPerShare) throw new RefusedError("limit", "the host has too many requests waiting; try again shortly");
    const csr = await readCsr(f.csr).catch((e) => { throw new RefusedError("bad_csr", `certificate request refused: ${e.message}`); });
    const req: Request = {
      id: newId("r"), share, guest: peer, target, publicKey: csr.publicKey,
      guestInfo: { name: f.name, addr: peer.addr, spki: csr.spki },
      timer: setTimeout(() => this.expire(req), this.o.limits.approvalTimeoutMs),
    };
    this.o.audit.append("request", { requestId: req.id, shareId: share.id, host: share.hostName, target, guest: f.name, guestKey: csr.spki, addr: peer.addr, reason: f.reason, via });
    this.requests.set(req.id, req);
    share.requests.add(req);
    peer.ch.send({ t: "pending", requestId: req.id, shareId: share.id, target });
    const deadline = Date.now() + this.o.limits.approvalTimeoutMs;
    for (const a of share.approvers) a.ch.send({ t: "ask", requestId: req.id, shareId: share.id, guest: req.guestInfo, target, reason: f.reason, deadline });
  }

  private expire(req: Request): void {
    if (!this.requests.has(req.id)) return;
    const mins = Math.round(this.o.limits.approvalTimeoutMs / 60_000);
    this.o.audit.append("request.expire", { requestId: req.id, shareId: req.share.id, guest: req.guestInfo.name });
    this.dropRequest(req, `the host did not answer within ${mins >= 1 ? `${mins} minute${mins === 1 ? "" : "s"}` : `${this.o.limits.approvalTimeoutMs / 1000}s`}`);
  }

  private dropRequest(req: Request, reason: string): void {
    clearTimeout(req.timer);
    this.requests.delete(req.id);
    req.share.requests.delete(req);
    req.guest.ch.send({ t: "denied", requestId: req.id, reason });
    for (const a of req.share.approvers) a.ch.send({ t: "cancel", requestId: req.id, reason });
  }

  private async decide(peer: Peer, f: CF<"decision">): Promise<void> {
    const req = this.requests.get(f.requestId);
    if (!req) throw new RefusedError("no_request", "that request is no longer waiting (answered, withdrawn or expired)");
    if (!req.share.approvers.has(peer)) throw new RefusedError("forbidden", "you are not an approver of this share");
    const who = { requestId: req.id, shareId: req.share.id, host: req.share.hostName, guest: req.guestInfo.name, guestKey: req.guestInfo.spki };
    if (!f.allow) {
      this.o.audit.append("deny", who);
      this.dropRequest(req, "the host declined the request");
      return;
    }
    if (this.sessions.size >= this.o.limits.maxSessions) {
      this.o.audit.append("deny", { ...who, reason: "session limit" });
      this.dropRequest(req, "the coordinator has reached its session limit");
      return;
    }
    clearTimeout(req.timer);
    this.requests.delete(req.id);
    req.share.requests.delete(req);
    const now = Date.now();
    const session: Session = {
      id: newId("s"), share: req.share, guest: req.guest, approver: peer, guestInfo: req.guestInfo, target: req.target,
      streams: new Set(), streamCount: 0, up: 0, down: 0, lastActive: now, lastBytes: 0,
    };
    const cert = await issueCert({
      caCertPem: this.o.ca.certPem, caKeyPem: this.o.ca.keyPem, publicKey: req.publicKey, commonName: req.guestInfo.name,
      uris: [`tessera://guest/${session.id}`], usage: "client", now: new Date(now), validForSeconds: this.o.limits.guestCertSeconds,
    });
    this.o.audit.append("approve", who);
    await this.o.store.openSession({ id: session.id, shareId: req.share.id, guestSpki: req.guestInfo.spki, guestName: req.guestInfo.name, target: req.target }, now);
    this.o.audit.append("session.open", { ...who, sessionId: session.id, target: req.target, addr: req.guestInfo.addr });
    this.sessions.set(session.id, session);
    req.share.sessions.add(session);
    req.share.agent.ch.send({ t: "session", sessionId: session.id, shareId: req.share.id, target: req.target, guest: req.guestInfo });
    req.guest.ch.send({ t: "approved", requestId: req.id, sessionId: session.id, cert, hostSpki: req.share.hostSpki, target: req.target, idleTimeoutSec: Math.round(this.o.limits.idleTimeoutMs / 1000) });
    for (const a of req.share.approvers) if (a !== peer) a.ch.send({ t: "cancel", requestId: req.id, reason: "approved elsewhere" });
  }

  private open(peer: Peer, f: CF<"open">): void {
    const s = this.sessions.get(f.sessionId);
    // The same answer whether the session is unknown or someone else's: ids are not capabilities.
    if (!s || s.guest !== peer) throw refusedRef("no_session", `no session "${f.sessionId}" belongs to this guest`, f.ref);
    if (s.streams.size >= this.o.limits.maxStreamsPerSession || this.streamTotal >= this.o.limits.maxStreams) {
      throw refusedRef("limit", "stream limit reached for this session", f.ref);
    }
    const streamId = newId("t");
    // Group commit: the splicer holds both halves until this line is on disk (see Splicer.create).
    const durable = this.o.audit.appendDurable("stream.open", { sessionId: s.id, streamId, shareId: s.share.id, guest: s.guestInfo.name, target: s.target });
    const { stream, guestToken, agentToken } = this.splicer.create(streamId, s.id, durable);
    this.streamTotal++;
    s.streams.add(stream);
    s.streamCount++;
    s.lastActive = Date.now();
    s.share.agent.ch.send({ t: "incoming", sessionId: s.id, streamId: stream.id, token: agentToken });
    peer.ch.send({ t: "stream", sessionId: s.id, streamId: stream.id, token: guestToken, ref: f.ref });
  }

  private onStreamClosed(stream: Stream, reason: string): void {
    this.streamTotal--;
    const s = this.sessions.get(stream.sessionId);
    if (s) {
      s.streams.delete(stream);
      s.up += stream.up;
      s.down += stream.down;
      s.lastActive = Date.now();
    }
    // Records what already happened (nothing waits on it): durable with the next sync, within 50 ms.
    this.o.audit.appendSoon("stream.close", { sessionId: stream.sessionId, streamId: stream.id, bytesUp: stream.up, bytesDown: stream.down, reason })
      .catch((err) => log.error(`audit log: ${errorMessage(err)}`));
  }

  private endByPeer(peer: Peer, f: CF<"end">): void {
    const s = this.sessions.get(f.sessionId);
    if (!s) return;
    if (s.guest === peer) this.closeSession(s, "the guest ended the session");
    else if (s.share.approvers.has(peer)) this.closeSession(s, "the host ended the session");
    else throw new RefusedError("no_session", `no session "${f.sessionId}" belongs to you`);
  }

  /** Operator revoke: streams are destroyed at once, not drained. */
  revoke(sessionId: string, by: string): boolean {
    const s = this.sessions.get(sessionId);
    if (!s) return false;
    this.o.audit.append("revoke", { sessionId, shareId: s.share.id, guest: s.guestInfo.name, by });
    this.closeSession(s, "revoked by the operator");
    return true;
  }

  private closeSession(s: Session, reason: string): void {
    if (!this.sessions.has(s.id)) return;
    // Streams end first, while the session is still found, so their bytes count in its total.
    for (const st of [...s.streams]) this.splicer.end(st, reason);
    this.sessions.delete(s.id);
    s.share.sessions.delete(s);
    this.o.audit.append("session.close", { sessionId: s.id, shareId: s.share.id, guest: s.guestInfo.name, reason, streams: s.streamCount, bytesUp: s.up, bytesDown: s.down });
    void this.o.store.closeSession(s.id, reason, Date.now()).catch(() => {});
    const frame: ServerFrame = { t: "closed", sessionId: s.id, reason };
    s.guest.ch.send(frame);
    s.share.agent.ch.send(frame);
    for (const a of s.share.approvers) if (a !== s.share.agent) a.ch.send(frame);
  }

  /** A connection went away: whatever it held ends with it. */
  drop(peer: Peer): void {
    for (const req of [...this.requests.values()]) {
      if (req.guest === peer) {
        this.o.audit.append("request.withdraw", { requestId: req.id, shareId: req.share.id, guest: req.guestInfo.name });
        this.dropRequest(req, "withdrawn");
      }
    }
    for (const s of [...this.sessions.values()]) {
      if (s.guest === peer) this.closeSession(s, "the guest disconnected");
      else if (s.share.agent === peer) this.closeSession(s, "the host's agent disconnected");
      else if (s.approver === peer) this.closeSession(s, "the host stopped sharing");
    }
    for (const share of [...this.shares.values()]) {
      share.approvers.delete(peer);
      if (share.agent !== peer) continue;
      for (const req of [...share.requests]) this.dropRequest(req, "the host went offline");
      this.shares.delete(share.id);
      this.o.audit.append("share.close", { shareId: share.id, host: share.hostName });
      void this.o.store.closeShare(share.id, Date.now()).catch(() => {});
    }
  }

  private sweepIdle(): void {
    const now = Date.now();
    for (const s of [...this.sessions.values()]) {
      let bytes = s.up + s.down;
      for (const st of s.streams) bytes += st.up + st.down;
      if (bytes !== s.lastBytes) {
        s.lastBytes = bytes;
        s.lastActive = now;
      } else if (now - s.lastActive >= this.o.limits.idleTimeoutMs) {
        this.o.audit.append("session.idle", { sessionId: s.id, idleMs: now - s.lastActive });
        this.closeSession(s, `idle for ${formatDuration(this.o.limits.idleTimeoutMs)}`);
      }
    }
  }

  private approverShare(peer: Peer, shareId: string): LiveShare {
    const share = this.shares.get(shareId);
    if (!share || !share.approvers.has(peer)) throw new RefusedError("forbidden", `you are not approving share "${shareId}"`);
    return share;
  }

  private rateLimit(peer: Peer): void {
    if (!this.redeemLimiter.allow(ip(peer.addr))) {
      this.o.audit.append("redeem.fail", { addr: peer.addr, reason: "rate_limited" });
      throw new RefusedError("rate_limited", `too many attempts from ${ip(peer.addr)}; wait a minute and try again`);
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const s of [...this.sessions.values()]) this.closeSession(s, "the coordinator is shutting down");
    for (const r of [...this.requests.values()]) this.dropRequest(r, "the coordinator is shutting down");
  }
}

function requireHost(peer: Peer): { spki: string; name: string } {
  if (!peer.host) throw new RefusedError("not_host", "this needs an enrolled host certificate; run `tessera link COORDINATOR --token TOKEN` on this machine first");
  return peer.host;
}

function refusedRef(code: string, message: string, ref: string): RefusedError {
  return Object.assign(new RefusedError(code, message), { ref });
}

export function newId(prefix: string): string {
  return `${prefix}-${randomBytes(9).toString("base64url")}`;
}

function ip(addr: string): string {
  return addr.replace(/:\d+$/, "");
}

export function formatDuration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} minute${ms === 60_000 ? "" : "s"}`;
  return `${ms / 1000}s`;
}
