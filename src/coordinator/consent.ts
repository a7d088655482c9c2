// Consent: a guest asks (by code or share id), the host's approvers answer, and a yes becomes a session.
// Every step is audited before anyone hears of it; a request the host never got to answer gives its code back.
import { RefusedError } from "../errors.ts";
import { logger } from "../log.ts";
import { issueCert, readCsr } from "../pki/index.ts";
import { background, ip, newId, type BrokerOptions, type LiveShare, type Peer, type Request, type Session } from "./state.ts";
import { formatCode, hashCode, normalizeCode } from "../wire/codes.ts";
import { RateLimiter } from "./limits.ts";
import type { ClientFrame, FrameOf } from "../wire/protocol.ts";
import type { SessionBook } from "./sessions.ts";
import { metrics, redeemFailed } from "./metrics.ts";

type CF<T extends ClientFrame["t"]> = FrameOf<ClientFrame, T>;
const log = logger("coordinator");
const RECHECK_MEMORY = 1000;

export class Consent {
  readonly pending = new Map<string, Request>();
  /** Requests ended without the host's answer, kept (bounded) so a returning guest hears why. */
  private readonly voided = new Map<string, string>();
  readonly limiter: RateLimiter;

  constructor(private readonly o: BrokerOptions, private readonly shares: Map<string, LiveShare>, private readonly sessions: SessionBook) {
    this.limiter = new RateLimiter(o.limits.redeemPerMinute);
  }

  async redeem(peer: Peer, f: CF<"redeem">): Promise<void> {
    this.rateLimit(peer);
    const code = normalizeCode(f.code);
    if (!code) {
      redeemFailed("bad_code");
      throw new RefusedError("bad_code", "that is not a tessera code (expected 8 letters and digits, like K7QF-M2XD)");
    }
    const hash = hashCode(this.o.codeKey, code);
    const now = Date.now();
    const row = await this.o.store.getCode(hash);
    const fail = (why: "unknown" | "used" | "expired" | "offline", message: string) => {
      this.o.audit.append("redeem.fail", { addr: peer.addr, guest: f.name, reason: why, shareId: row?.shareId });
      redeemFailed(why);
      return new RefusedError(`code_${why}`, message);
    };
    if (!row) throw fail("unknown", `code ${formatCode(code)} is not known to this coordinator; check it with the host`);
    if (row.usedAt !== null) throw fail("used", "this code was already used; codes work once, ask the host for a new one");
    if (row.expiresAt <= now) throw fail("expired", `this code expired at ${new Date(row.expiresAt).toISOString()}; ask the host for a new one`);
    // Checked before the code is spent, so a host that is reconnecting does not cost the guest its code.
    const share = this.shares.get(row.shareId);
    if (!share) throw fail("offline", "the host who made this code has stopped sharing; ask them for a new code");
    if (!share.agent) throw fail("offline", "the host is reconnecting to the coordinator right now; try the same code again in a moment");
    if (!(await this.o.store.useCode(hash, now))) throw fail("used", "this code was already used; codes work once, ask the host for a new one");
    await this.ask(peer, share, row.target, f, "code", hash);
  }

  async request(peer: Peer, f: CF<"request">): Promise<void> {
    this.rateLimit(peer);
    const share = this.shares.get(f.shareId);
    if (!share?.agent) throw new RefusedError("no_share", `share "${f.shareId}" is not online`);
    if (!share.targets.includes(f.target)) throw new RefusedError("bad_target", `share "${share.id}" does not offer ${f.target}`);
    await this.ask(peer, share, f.target, f, "share-id");
  }

  private async ask(peer: Peer, share: LiveShare, target: string, f: { csr: string; name: string; reason: string }, via: string, codeHash?: string): Promise<void> {
    const giveBack = async () => { if (codeHash) await this.o.store.releaseCode(codeHash); };
    if (share.approvers.size === 0) {
      await giveBack();
      throw new RefusedError("no_approver", `nobody is approving requests for share "${share.id}" right now; ask the host to run \`tessera share --share-id ${share.id}\``);
    }
    if (share.requests.size >= this.o.limits.maxPendingPerShare) {
      await giveBack();
      throw new RefusedError("limit", "the host has too many requests waiting; try again shortly");
    }
    const csr = await readCsr(f.csr).catch(async (e) => {
      await giveBack();
      throw new RefusedError("bad_csr", `certificate request refused: ${e.message}`);
    });
    const req: Request = {
      id: newId("r"), share, guest: peer, target, publicKey: csr.publicKey, codeHash,
      guestInfo: { name: f.name, addr: peer.addr, spki: csr.spki },
      timer: setTimeout(() => this.expire(req), this.o.limits.approvalTimeoutMs),
    };
    await this.o.store.putRequest({ id: req.id, shareId: share.id, codeHash: codeHash ?? null, guestName: f.name, guestSpki: csr.spki, target, createdAt: Date.now() });
    this.o.audit.append("request", { ...requestActors(req), target, reason: f.reason, via });
    this.pending.set(req.id, req);
    share.requests.add(req);
    peer.ch.send({ t: "pending", requestId: req.id, shareId: share.id, target });
    const deadline = Date.now() + this.o.limits.approvalTimeoutMs;
    for (const a of share.approvers) a.ch.send({ t: "ask", requestId: req.id, shareId: share.id, guest: req.guestInfo, target, reason: f.reason, deadline });
  }

  private expire(req: Request): void {
    if (!this.pending.has(req.id)) return;
    const mins = Math.round(this.o.limits.approvalTimeoutMs / 60_000);
    this.o.audit.append("request.expire", requestActors(req));
    metrics.requests.inc(1, { outcome: "expired" });
    this.drop(req, `the host did not answer within ${mins >= 1 ? `${mins} minute${mins === 1 ? "" : "s"}` : `${this.o.limits.approvalTimeoutMs / 1000}s`}`);
  }

  /** Ends a request; `unanswered` means the host never had its say, so the code works again. */
  drop(req: Request, reason: string, unanswered = false): void {
    this.forget(req);
    background(this.o.store.deleteRequest(req.id), "request delete", log.warn);
    if (unanswered && req.codeHash) background(this.o.store.releaseCode(req.codeHash), "code release", log.warn);
    this.remember(req.id, reason);
    req.guest.ch.send({ t: "denied", requestId: req.id, reason });
    for (const a of req.share.approvers) a.ch.send({ t: "cancel", requestId: req.id, reason });
  }

  /** Requests a stopped coordinator left waiting: denied, with their codes given back. */
  async voidLeftovers(reason: string): Promise<number> {
    const rows = await this.o.store.takeRequests();
    for (const r of rows) {
      this.o.audit.append("deny", { requestId: r.id, shareId: r.shareId, guest: r.guestName, guestKey: r.guestSpki, reason });
      metrics.requests.inc(1, { outcome: "voided" });
      if (r.codeHash) await this.o.store.releaseCode(r.codeHash);
      this.remember(r.id, reason);
    }
    return rows.length;
  }

  /** Denies every waiting request now, durably, before the store closes. */
  async shutdown(reason: string): Promise<void> {
    for (const req of [...this.pending.values()]) {
      this.forget(req);
      this.o.audit.append("deny", { ...requestActors(req), reason });
      await this.o.store.deleteRequest(req.id);
      if (req.codeHash) await this.o.store.releaseCode(req.codeHash);
      req.guest.ch.send({ t: "denied", requestId: req.id, reason });
    }
  }

  recheck(peer: Peer, f: CF<"recheck">): void {
    if (this.pending.has(f.requestId)) throw new RefusedError("still_pending", "that request is still waiting for the host");
    peer.ch.send({ t: "denied", requestId: f.requestId, reason: this.voided.get(f.requestId) ?? "that request is no longer waiting (answered, withdrawn or expired)" });
  }

  /** The request stops waiting: no timer, no longer pending, no longer the share's. */
  private forget(req: Request): void {
    clearTimeout(req.timer);
    this.pending.delete(req.id);
    req.share.requests.delete(req);
  }

  private remember(id: string, reason: string): void {
    if (this.voided.size >= RECHECK_MEMORY) this.voided.delete(this.voided.keys().next().value!);
    this.voided.set(id, reason);
  }

  async decide(peer: Peer, f: CF<"decision">): Promise<void> {
    const req = this.pending.get(f.requestId);
    if (!req) throw new RefusedError("no_request", "that request is no longer waiting (answered, withdrawn or expired)");
    if (!req.share.approvers.has(peer)) throw new RefusedError("forbidden", "you are not an approver of this share");
    const who = requestActors(req);
    if (!f.allow) {
      this.o.audit.append("deny", who);
      metrics.requests.inc(1, { outcome: "denied" });
      this.drop(req, "the host declined the request");
      return;
    }
    const agent = req.share.agent;
    if (!agent || this.sessions.all.size >= this.o.limits.maxSessions) {
      const why = agent ? "the coordinator has reached its session limit" : "the host's agent is offline";
      this.o.audit.append("deny", { ...who, reason: why });
      metrics.requests.inc(1, { outcome: "denied" });
      this.drop(req, why);
      return;
    }
    this.forget(req);
    const now = Date.now();
    const session: Session = {
      id: newId("s"), share: req.share, guest: req.guest, approver: peer, guestInfo: req.guestInfo, target: req.target, restored: false, openedAt: now,
      streams: new Set(), streamCount: 0, up: 0, down: 0, lastActive: now, lastBytes: 0,
    };
    const cert = await issueCert({
      caCertPem: this.o.ca.certPem, caKeyPem: this.o.ca.keyPem, publicKey: req.publicKey, commonName: req.guestInfo.name,
      uris: [`tessera://guest/${session.id}`], usage: "client", now: new Date(now), validForSeconds: this.o.limits.guestCertSeconds,
    });
    this.o.audit.append("approve", who);
    metrics.requests.inc(1, { outcome: "approved" });
    // Stored before anyone hears of it: a restart right after this still knows the session.
    await this.o.store.openSession({ id: session.id, shareId: req.share.id, guestSpki: req.guestInfo.spki, guestName: req.guestInfo.name, guestAddr: req.guestInfo.addr, hostName: req.share.hostName, target: req.target, openedAt: now });
    await this.o.store.deleteRequest(req.id);
    this.o.audit.append("session.open", { ...who, sessionId: session.id, target: req.target });
    metrics.sessionsTotal.inc();
    this.sessions.add(session);
    agent.ch.send({ t: "session", sessionId: session.id, shareId: req.share.id, target: req.target, guest: req.guestInfo });
    req.guest.ch.send({ t: "approved", requestId: req.id, sessionId: session.id, cert, hostSpki: req.share.hostSpki, target: req.target, idleTimeoutSec: Math.round(this.o.limits.idleTimeoutMs / 1000) });
    for (const a of req.share.approvers) if (a !== peer) a.ch.send({ t: "cancel", requestId: req.id, reason: "approved elsewhere" });
  }

  private rateLimit(peer: Peer): void {
    const addr = ip(peer.addr);
    if (!this.limiter.allow(addr)) {
      this.o.audit.append("redeem.fail", { addr: peer.addr, reason: "rate_limited" });
      redeemFailed("rate_limited");
      throw new RefusedError("rate_limited", `too many attempts from ${addr}; wait a minute and try again`);
    }
  }
}

/** Who a request's audit lines are about: the request, its share and host, and the guest who asked. */
export function requestActors(req: Request) {
  return { requestId: req.id, shareId: req.share.id, host: req.share.hostName, guest: req.guestInfo.name, guestKey: req.guestInfo.spki, addr: req.guestInfo.addr };
}
