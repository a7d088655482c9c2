// Consent: a guest asks (by code or share id), the host's approvers answer, and a yes becomes a session.
// Every step is audited before anyone hears of it; a request the host never got to answer gives its code back.
import { LEASE_LOST } from "./leases.ts";
import { RefusedError } from "../errors.ts";
import { logger } from "../log.ts";
import { issueCert, readCsr } from "../pki/index.ts";
import {
  background,
  ip,
  newId,
  type BrokerOptions,
  type LiveShare,
  type Peer,
  type Request,
  type Session,
} from "./state.ts";
import { hashCode, normalizeNameplate } from "../wire/codes.ts";
import { RateLimiter } from "./limits.ts";
import { sourceKey } from "./admission.ts";
import { RefusalTally } from "./refusals.ts";
import type { ClientFrame, FrameOf, ServerFrame } from "../wire/protocol.ts";
import { describeScope, typedAnswer } from "../wire/scope.ts";
import { receiptChainProblem } from "../wire/receipt-chain.ts";
import { identityFingerprint, identityProblem, viaCode, viaShare, type IdentityProof } from "../pki/identity.ts";
import type { SessionBook } from "./sessions.ts";
import { SPENT_CODE } from "../store/store.ts";
import { enrolFailed, metrics, redeemFailed } from "./metrics.ts";

type CF<T extends ClientFrame["t"]> = FrameOf<ClientFrame, T>;
const log = logger("coordinator");
const RECHECK_MEMORY = 1000;
/** One answer for a code that is unknown, used or expired, so a guesser learns nothing; the audit log keeps which. */
/** What both sides hear when the key confirmation fails: the code is burnt. */
export const CODE_MISMATCH = "the code did not match: nobody was connected";
export const INVALID_CODE = "this code is not valid: it may be mistyped, used or expired; ask the host for a new one";

export class Consent {
  readonly pending = new Map<string, Request>();
  /** Requests ended without the host's answer, kept (bounded) so a returning guest hears why. */
  private readonly voided = new Map<string, string>();
  readonly limiter: RateLimiter;
  /** One budget for every redeem and request on this node, whoever asks: many /64s together still get only so many guesses. */
  private readonly everyone: RateLimiter;
  /** Refusals that cost the asker nothing, audited as one line per address per window. */
  readonly refusals: RefusalTally;

  constructor(
    private readonly o: BrokerOptions,
    private readonly shares: Map<string, LiveShare>,
    private readonly sessions: SessionBook,
  ) {
    this.limiter = new RateLimiter(o.limits.redeemPerMinute);
    this.everyone = new RateLimiter(o.limits.redeemGlobalPerMinute, 60_000, 1);
    this.refusals = new RefusalTally(o.audit, o.limits.refusalAuditWindowMs, o.limits.maxRefusalAddresses, (m) =>
      log.warn(m),
    );
  }

  async redeem(peer: Peer, f: CF<"redeem">): Promise<void> {
    await this.rateLimit(peer, "redeem");
    const fail = (
      why: "bad_code" | "unknown" | "used" | "expired" | "offline",
      err: RefusedError,
      shareId?: string,
    ) => {
      this.refusals.note(ip(peer.addr), `redeem.${why}`, shareId);
      redeemFailed(why);
      return err;
    };
    // Only the nameplate comes this way: the secret half stays with the guest and keys the PAKE.
    const code = normalizeNameplate(f.code);
    if (!code)
      throw fail(
        "bad_code",
        new RefusedError(
          "bad_code",
          "that is not a tessera code's nameplate (expected its first 4 letters and digits; update tessera if you sent the whole code)",
        ),
      );
    const hash = hashCode(this.o.codeKey, code);
    const now = Date.now();
    const row = await this.o.store.getCode(hash);
    const invalid = (why: "unknown" | "used" | "expired") =>
      fail(why, new RefusedError("code_invalid", INVALID_CODE), row?.shareId);
    if (!row) throw invalid("unknown");
    if (row.usedAt !== null) throw invalid("used");
    if (row.expiresAt <= now) throw invalid("expired");
    // Checked before the code is spent, so a host that is reconnecting does not cost the guest its code.
    const share = this.shares.get(row.shareId);
    if (!share)
      throw fail(
        "offline",
        new RefusedError("code_offline", "the host who made this code has stopped sharing; ask them for a new code"),
        row.shareId,
      );
    if (!share.agent)
      throw fail(
        "offline",
        new RefusedError(
          "code_offline",
          "the host is reconnecting to the coordinator right now; try the same code again in a moment",
        ),
        row.shareId,
      );
    if (!(await this.o.store.useCode(hash, now))) throw invalid("used");
    await this.ask(peer, share, row.target, f, "code", hash, { nameplate: code, ...f.pake }, viaCode(code));
  }

  /** A request by share id: only for shares whose host turned it on (`--allow-requests-by-id`). */
  async request(peer: Peer, f: CF<"request">): Promise<void> {
    await this.rateLimit(peer, "request");
    const share = this.shares.get(f.shareId);
    const refuse = (why: "no_share" | "bad_target", message: string) => {
      this.refusals.note(ip(peer.addr), `request.${why}`);
      redeemFailed(why);
      return new RefusedError(why, message);
    };
    // Offline and closed to requests by id read the same, so the answer does not tell which share ids exist.
    if (!share?.agent || !share.requestsById) {
      throw refuse(
        "no_share",
        `share "${f.shareId}" is not online or does not take requests by share id; ask the host for a code (or to share with --allow-requests-by-id)`,
      );
    }
    if (!share.targets.includes(f.target)) throw refuse("bad_target", `share "${share.id}" does not offer ${f.target}`);
    await this.ask(peer, share, f.target, f, "share-id", undefined, undefined, viaShare(share.id, f.target));
  }

  private async ask(
    peer: Peer,
    share: LiveShare,
    target: string,
    f: { csr: string; name: string; reason: string; identity?: IdentityProof },
    via: string,
    codeHash?: string,
    pake?: Request["pake"],
    idVia = "",
  ): Promise<void> {
    const giveBack = async () => {
      if (codeHash) await this.o.store.releaseCode(codeHash);
    };
    if (share.approvers.size === 0) {
      await giveBack();
      // The share id stays unsaid: a code holder must not learn it (it may be taken for requests by id).
      throw new RefusedError(
        "no_approver",
        "nobody is approving requests for this share right now; ask the host to run `tessera share --share-id` for it",
      );
    }
    if (share.requests.size >= this.o.limits.maxPendingPerShare) {
      await giveBack();
      throw new RefusedError("limit", "the host has too many requests waiting; try again shortly");
    }
    // One asker cannot fill the host's queue: caps per address and per guest key, below the share's.
    const addr = sourceKey(ip(peer.addr));
    const fromAddr = [...share.requests].filter((r) => sourceKey(ip(r.guestInfo.addr)) === addr).length;
    if (fromAddr >= this.o.limits.maxPendingPerAddress) {
      await giveBack();
      throw new RefusedError(
        "limit",
        `${fromAddr} request(s) from your address are already waiting for this host (the per-address cap); wait for their answers`,
      );
    }
    const csr = await readCsr(f.csr).catch(async (e) => {
      await giveBack();
      throw new RefusedError("bad_csr", `certificate request refused: ${e.message}`);
    });
    if (
      [...share.requests].filter((r) => r.guestInfo.spki === csr.spki).length >= this.o.limits.maxPendingPerGuestKey
    ) {
      await giveBack();
      throw new RefusedError(
        "limit",
        "a request with this key is already waiting for this host (the per-key cap); wait for its answer",
      );
    }
    // Checked here for a clear refusal; the host checks it again, since it trusts no coordinator with it.
    const bad =
      f.identity && identityProblem(f.identity, { tlsSpki: csr.spki, name: f.name, reason: f.reason, via: idVia });
    if (bad) {
      await giveBack();
      throw new RefusedError(
        "bad_identity",
        `request refused: ${bad} (delete identity.key in TESSERA_HOME only if you mean to become a new guest)`,
      );
    }
    const identity = f.identity && { ...f.identity, fingerprint: identityFingerprint(f.identity.pub)! };
    const req: Request = {
      id: newId("r"),
      share,
      guest: peer,
      target,
      publicKey: csr.publicKey,
      codeHash,
      pake,
      identity,
      guestInfo: { name: f.name, addr: peer.addr, spki: csr.spki },
      timer: setTimeout(() => this.expire(req), this.o.limits.approvalTimeoutMs),
    };
    await this.o.store.putRequest({
      id: req.id,
      shareId: share.id,
      codeHash: codeHash ?? null,
      guestName: f.name,
      guestSpki: csr.spki,
      target,
      createdAt: Date.now(),
    });
    this.o.audit.append("request", { ...requestActors(req), target, reason: f.reason, via });
    this.pending.set(req.id, req);
    share.requests.add(req);
    peer.ch.send({ t: "pending", requestId: req.id, target });
    const deadline = Date.now() + this.o.limits.approvalTimeoutMs;
    for (const a of share.approvers)
      a.ch.send({
        t: "ask",
        requestId: req.id,
        shareId: share.id,
        guest: req.guestInfo,
        target,
        reason: f.reason,
        deadline,
        pake,
        ...(identity ? { identity: { pub: identity.pub, sig: identity.sig } } : {}),
      });
  }

  private expire(req: Request): void {
    if (!this.pending.has(req.id)) return;
    const mins = Math.round(this.o.limits.approvalTimeoutMs / 60_000);
    this.o.audit.append("request.expire", requestActors(req));
    metrics.requests.inc(1, { outcome: "expired" });
    this.drop(
      req,
      `the host did not answer within ${mins >= 1 ? `${mins} minute${mins === 1 ? "" : "s"}` : `${this.o.limits.approvalTimeoutMs / 1000}s`}`,
    );
  }

  /** Ends a request; `unanswered` means the host never had its say, so the code works again. */
  drop(req: Request, reason: string, unanswered = false, answered?: { told: string; by: Peer }): void {
    this.forget(req);
    // A PAKE run that ended unconfirmed was one guess at the code, whoever made it: audited as such.
    if (req.pakeFrom && !req.pakeDone) {
      this.o.audit.append("code.abandoned", { ...requestActors(req), reason });
      metrics.requests.inc(1, { outcome: "abandoned" });
    }
    background(this.o.store.deleteRequest(req.id), "request delete", log.warn);
    // Once the PAKE ran, the code was one guess: it is not given back.
    if (unanswered && req.codeHash && !req.pakeFrom)
      background(this.o.store.releaseCode(req.codeHash), "code release", log.warn);
    this.remember(req.id, reason);
    req.guest.ch.send({ t: "denied", requestId: req.id, reason });
    for (const a of req.share.approvers)
      if (a !== answered?.by) a.ch.send({ t: "cancel", requestId: req.id, reason: answered?.told ?? reason });
  }

  /** Requests a stopped coordinator left waiting: denied, with their codes given back. */
  async voidLeftovers(reason: string): Promise<number> {
    const rows = await this.o.store.takeRequests(this.o.cluster?.name);
    for (const r of rows) {
      // A code whose check already ran was one guess: burnt, and the guest is told so, not "ask again".
      const spent = r.codeHash === SPENT_CODE;
      const why = spent
        ? "the coordinator restarted during the code check; the code is burnt: ask the host for a new one"
        : reason;
      this.o.audit.append("deny", {
        requestId: r.id,
        shareId: r.shareId,
        guest: r.guestName,
        guestKey: r.guestSpki,
        reason: why,
      });
      metrics.requests.inc(1, { outcome: "voided" });
      if (r.codeHash && !spent) await this.o.store.releaseCode(r.codeHash);
      this.remember(r.id, why);
    }
    return rows.length;
  }

  /** Denies every waiting request now, durably, before the store closes. */
  async shutdown(reason: string): Promise<void> {
    for (const req of [...this.pending.values()]) {
      this.forget(req);
      this.o.audit.append("deny", { ...requestActors(req), reason });
      await this.o.store.deleteRequest(req.id);
      // Once the PAKE ran, the code was one guess: not given back.
      if (req.codeHash && !req.pakeFrom) await this.o.store.releaseCode(req.codeHash);
      req.guest.ch.send({ t: "denied", requestId: req.id, reason });
    }
    await this.refusals.flush();
  }

  /** The code's minter answered the guest's CPace share (no tag: the guest confirms first): relayed to the guest, once. */
  async relayPake(peer: Peer, f: CF<"pake">): Promise<void> {
    const req = this.pending.get(f.requestId);
    if (!req?.pake) throw new RefusedError("no_request", "that request is no longer waiting for a code check");
    if (!req.share.approvers.has(peer)) throw new RefusedError("forbidden", "you are not an approver of this share");
    if (req.pakeFrom) return;
    req.pakeFrom = peer;
    // Durable before the guest can make its guess: a restart after this does not give the code back.
    await this.o.store.spendRequestCode(req.id);
    if (this.pending.get(req.id) !== req) return;
    req.guest.ch.send({ t: "pake", requestId: req.id, msg: f.msg, hostSpki: f.hostSpki });
  }

  /** The guest's key confirmation, for the approver that ran the PAKE; none means the host's share did not decode. */
  relayConfirm(peer: Peer, f: CF<"confirm">): void {
    const req = this.pending.get(f.requestId);
    if (!req?.pakeFrom || req.pakeDone || req.guest !== peer)
      throw new RefusedError("no_request", "that request is not waiting for your confirmation");
    req.pakeFrom.ch.send({ t: "confirm", requestId: req.id, tag: f.tag });
    if (f.tag === undefined) this.mismatch(req, "guest");
  }

  /** The host checked the guest's tag and sends its own: the run is confirmed, and the guest checks the host's. */
  relayConfirmed(peer: Peer, f: CF<"confirmed">): void {
    const req = this.pending.get(f.requestId);
    if (!req?.pakeFrom || req.pakeDone || req.pakeFrom !== peer)
      throw new RefusedError("no_request", "that request is not waiting for your confirmation");
    req.pakeDone = "confirmed";
    req.guest.ch.send({ t: "confirmed", requestId: req.id, tag: f.tag });
  }

  /** A failed key confirmation: audited, the code stays burnt, both sides told. */
  private mismatch(req: Request, detectedBy: "guest" | "host"): void {
    req.pakeDone = "mismatch";
    this.o.audit.append("code.mismatch", { ...requestActors(req), detectedBy });
    metrics.requests.inc(1, { outcome: "mismatch" });
    this.drop(req, CODE_MISMATCH);
  }

  recheck(peer: Peer, f: CF<"recheck">): void {
    if (this.pending.has(f.requestId))
      throw new RefusedError("still_pending", "that request is still waiting for the host");
    peer.ch.send({
      t: "denied",
      requestId: f.requestId,
      reason: this.voided.get(f.requestId) ?? "that request is no longer waiting (answered, withdrawn or expired)",
    });
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
    if (!req)
      throw new RefusedError("no_request", "that request is no longer waiting (answered, withdrawn or expired)");
    if (!req.share.approvers.has(peer)) throw new RefusedError("forbidden", "you are not an approver of this share");
    const who = requestActors(req);
    if (f.mismatch && req.pakeFrom === peer && !req.pakeDone) return this.mismatch(req, "host");
    // A yes to a code request needs the run confirmed first: the guest proved the code, then the host.
    if (f.allow && req.pake && req.pakeDone !== "confirmed")
      throw new RefusedError("not_confirmed", "that request's code check has not completed; it cannot be approved yet");
    // A receipt the host signed (or an approver it delegated to) must say what the decision says: the coordinator
    // relays it, never makes one. Whether the host still stands behind a delegation is the agent's word.
    const bad =
      f.receipt &&
      receiptChainProblem(f.receipt, {
        hostKey: req.share.hostSpki,
        guestKey: req.guestInfo.spki,
        target: req.target,
        decision: f.allow ? "allow" : "deny",
        requestId: req.id,
        shareId: req.share.id,
        scope: f.scope,
        now: Date.now(),
      });
    if (bad) throw new RefusedError("bad_receipt", `this decision's signed receipt does not match it: ${bad}`);
    const receipt = f.receipt ? { receipt: JSON.stringify(f.receipt) } : {};
    if (!f.allow) {
      this.o.audit.append("deny", { ...who, ...(f.reason ? { reason: f.reason } : {}), ...receipt });
      metrics.requests.inc(1, { outcome: "denied" });
      // The host's words reach the guest; the guest's client shows them escaped, as any text from outside.
      this.drop(req, f.reason ? `the host declined: ${f.reason}` : "the host declined the request", false, {
        told: `answered by ${answeredBy(peer)} (n)`,
        by: peer,
      });
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
      id: newId("s"),
      share: req.share,
      guest: req.guest,
      approver: peer,
      guestInfo: req.guestInfo,
      target: req.target,
      restored: false,
      openedAt: now,
      streams: new Set(),
      streamCount: 0,
      up: 0,
      down: 0,
      lastActive: now,
      lastBytes: 0,
      scope: f.scope,
      receipt: f.receipt,
    };
    const cert = await issueCert({
      caCertPem: this.o.ca.certPem,
      caKeyPem: this.o.ca.keyPem,
      publicKey: req.publicKey,
      commonName: req.guestInfo.name,
      uris: [`tessera://guest/${session.id}`],
      usage: "client",
      now: new Date(now),
      validForSeconds: this.o.limits.guestCertSeconds,
    });
    this.o.audit.append("approve", { ...who, ...(f.scope ? { scope: describeScope(f.scope) } : {}), ...receipt });
    metrics.requests.inc(1, { outcome: "approved" });
    // Stored before anyone hears of it: a restart right after this still knows the session. One node of
    // several stores it only while it still holds the share's lease (a stale node's yes opens nothing).
    const stored = await this.o.store.openSession(
      {
        id: session.id,
        shareId: req.share.id,
        guestSpki: req.guestInfo.spki,
        guestName: req.guestInfo.name,
        guestAddr: req.guestInfo.addr,
        hostName: req.share.hostName,
        target: req.target,
        openedAt: now,
        scope: f.scope ? JSON.stringify(f.scope) : null,
        receipt: receipt.receipt ?? null,
      },
      this.o.cluster?.fence(req.share.id),
    );
    if (!stored) throw new RefusedError("host_offline", `${LEASE_LOST}; ask again`);
    await this.o.store.deleteRequest(req.id);
    this.o.audit.append("session.open", { ...who, sessionId: session.id, target: req.target });
    metrics.sessionsTotal.inc();
    this.sessions.add(session);
    agent.ch.send(sessionFrame(session));
    req.guest.ch.send({
      t: "approved",
      requestId: req.id,
      sessionId: session.id,
      cert,
      hostSpki: req.share.hostSpki,
      target: req.target,
      idleTimeoutSec: Math.round(this.o.limits.idleTimeoutMs / 1000),
      scope: f.scope,
      receipt: f.receipt,
    });
    // Everyone else who was asked hears who answered, and how ("answered by laptop (y 15m)").
    const told = `answered by ${answeredBy(peer)} (${typedAnswer(f.scope)})`;
    for (const a of req.share.approvers) if (a !== peer) a.ch.send({ t: "cancel", requestId: req.id, reason: told });
  }

  /**
   * A redeem or request that met the database down was not judged (nothing about the code was learned):
   * it gives its attempt back, so a guest retrying through an outage is not locked out after it.
   */
  refundAttempt(peer: Peer): void {
    this.limiter.refund(ip(peer.addr));
  }

  /** Redeems and requests share one budget per address; enrolments have their own. Counted, not synced. */
  async rateLimit(peer: Peer, what: "redeem" | "request" | "enrol"): Promise<void> {
    const addr = ip(peer.addr);
    // Counted by /64 for IPv6: one subscriber's block is one asker.
    const source = sourceKey(addr);
    const key = what === "enrol" ? `enroll:${source}` : source;
    // With several nodes the budget is the deployment's: counted in the shared database too.
    if (
      this.limiter.allow(key) &&
      (what === "enrol" || this.everyone.allow("*")) &&
      (!this.o.cluster || (await this.o.cluster.allow(key, this.o.limits.redeemPerMinute)))
    )
      return;
    this.refusals.note(addr, `${what}.rate_limited`);
    if (what === "enrol") enrolFailed("rate_limited");
    else redeemFailed("rate_limited");
    throw new RefusedError("rate_limited", `too many attempts from ${addr}; wait a minute and try again`);
  }

  /** An enrolment refused for its token (unknown, expired, used): counted and audited in the window's line. */
  enrolRefused(peer: Peer, why: string): void {
    this.refusals.note(ip(peer.addr), `enrol.${why}`);
    enrolFailed(why);
  }
}

/** Who a request's audit lines are about: the request, its share and host, and the guest who asked. */
export function requestActors(req: Request) {
  return {
    requestId: req.id,
    shareId: req.share.id,
    host: req.share.hostName,
    guest: req.guestInfo.name,
    guestKey: req.guestInfo.spki,
    addr: req.guestInfo.addr,
    ...(req.identity ? { guestId: req.identity.fingerprint } : {}),
  };
}

/** What the agent is told of a session it serves: who, what, and the scope it must hold it to itself. */
export function sessionFrame(s: Session): ServerFrame {
  return {
    t: "session",
    sessionId: s.id,
    shareId: s.share.id,
    target: s.target,
    guest: s.guestInfo,
    ...(s.scope ? { scope: s.scope, openedAt: s.openedAt } : {}),
    ...(s.receipt ? { receipt: s.receipt, requestId: s.receipt.body.requestId } : {}),
  };
}

/** Who answered a request, as the other approvers are told: a delegated approver by its name, else the host. */
function answeredBy(peer: Peer): string {
  return peer.approverName ?? "the host";
}
