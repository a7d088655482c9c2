// Whether the agent takes a session the coordinator tells it of. The coordinator is not trusted to
// decide: with a vouch (the share's own approver in this process) only guest keys this host approved
// pass; with receipts, only an approval this host's key signed for exactly that guest key, target and scope.
import { receiptProblem } from "../wire/receipt.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";

export interface SessionCheck {
  vouch?: (guestSpki: string) => boolean;
  receipts?: boolean;
  /** This host's key fingerprint, the only signer a receipt may have. */
  hostKey: string;
}

/** Undefined when the session may be served; else what the guest is told and what the host's log says. */
export function sessionRefusal(
  f: FrameOf<ServerFrame, "session">,
  c: SessionCheck,
): { reason: string; detail: string } | undefined {
  if (c.vouch && !c.vouch(f.guest.spki)) {
    return {
      reason: "the coordinator named a guest key the host did not approve",
      detail: `the coordinator named guest key ${f.guest.spki}, which this host did not approve; it may be swapping keys`,
    };
  }
  if (!c.receipts) return undefined;
  if (!f.receipt)
    return {
      reason: "the approval carries no receipt signed by the host",
      detail: "the coordinator named a session with no receipt signed by this host",
    };
  const why = receiptProblem(f.receipt, {
    hostKey: c.hostKey,
    guestKey: f.guest.spki,
    target: f.target,
    decision: "allow",
    scope: f.scope,
  });
  return why
    ? {
        reason: `the approval's signed receipt does not match it (${why})`,
        detail: `the session's receipt does not match it (${why})`,
      }
    : undefined;
}
