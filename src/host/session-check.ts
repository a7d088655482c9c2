// Whether the agent takes a session the coordinator tells it of. The coordinator is not trusted to
// decide: with a vouch (the share's own approver in this process) only a yes given here for that request
// and guest key passes; with receipts, only an approval this host's key signed for exactly that request,
// guest key, target and scope. Either way a yes opens one session id, once (yes-book.ts).
import { receiptChainProblem } from "../wire/receipt-chain.ts";
import type { ApproverBook } from "./approver-book.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";
import type { YesBook } from "./yes-book.ts";

export interface SessionCheck {
  /** The share's own approver runs in this process: only its yeses pass. */
  vouch?: boolean;
  receipts?: boolean;
  /** This host's key fingerprint, the only signer a receipt may have. */
  hostKey: string;
  yes: YesBook;
  /** The host's approvers: a receipt signed by one counts only through a delegation in this book (approver-book.ts). */
  approvers?: ApproverBook;
}

type Refusal = { reason: string; detail: string };

/** Undefined when the session may be served (and the yes is now spent on it); else what the guest is told and the host's log says. */
export function sessionRefusal(f: FrameOf<ServerFrame, "session">, c: SessionCheck, now: number): Refusal | undefined {
  if (c.vouch && !c.yes.vouched(f.requestId, f.guest.spki)) {
    return {
      reason: "the coordinator named a guest key the host did not approve",
      detail: `the coordinator named guest key ${f.guest.spki} for request ${f.requestId ?? "(none)"}, which this host did not approve; it may be swapping keys`,
    };
  }
  if (c.receipts) {
    const why = receiptRefusal(f, c, now);
    if (why) return why;
  }
  if (!c.vouch && !c.receipts) return undefined;
  const requestId = f.requestId ?? f.receipt?.body.requestId;
  if (requestId === undefined)
    return { reason: "the approval names no request", detail: "the coordinator named a session with no request id" };
  const spent = c.yes.claim({ requestId, sessionId: f.sessionId, signedAt: f.receipt?.body.at }, now);
  return spent ? { reason: `the approval is already used (${spent})`, detail: spent } : undefined;
}

/** The one receipt check for a session: signed by this host's key, or by an approver it delegated to and still stands behind. */
function receiptRefusal(f: FrameOf<ServerFrame, "session">, c: SessionCheck, now: number): Refusal | undefined {
  if (!f.receipt)
    return {
      reason: "the approval carries no receipt signed by the host",
      detail: "the coordinator named a session with no receipt signed by this host",
    };
  if (f.requestId === undefined)
    return {
      reason: "the approval names no request",
      detail: "the coordinator named a session without the request its receipt answers",
    };
  if (f.receipt.delegation && !c.approvers)
    return {
      reason: "the approval is signed by an approver this host does not keep",
      detail: `the session's receipt is signed by approver ${f.receipt.delegation.body.name}, but this agent keeps no approvers book`,
    };
  const why = receiptChainProblem(f.receipt, {
    hostKey: c.hostKey,
    now,
    revoked: (d) => c.approvers?.revoked(d),
    guestKey: f.guest.spki,
    target: f.target,
    decision: "allow",
    requestId: f.requestId,
    shareId: f.shareId,
    scope: f.scope,
  });
  return why
    ? {
        reason: `the approval's signed receipt does not match it (${why})`,
        detail: `the session's receipt does not match it (${why})`,
      }
    : undefined;
}
