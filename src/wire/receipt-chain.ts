// The one check of a receipt's chain of trust, for the agent and for `audit verify`/`receipt verify` alike:
// host key -> delegation (signed by that key, not removed, valid when the receipt was signed and now, naming
// the receipt's share) -> the approver's signature on the receipt. A receipt with no delegation must be signed
// by the host key itself. Either way the receipt's own fields are then checked as receiptProblem does.
import { approverKey, type Delegation, delegationProblem } from "../pki/delegation.ts";
import { type Receipt, receiptProblem } from "./receipt.ts";

export type ChainExpect = Parameters<typeof receiptProblem>[1] & {
  /** Also require the delegation to be valid at this time (the agent's now; audit verify passes none). */
  now?: number;
  /** The host's own word that this delegation no longer counts, and why (host/approver-book.ts). */
  revoked?: (d: Delegation) => string | undefined;
};

/** Why this receipt does not prove the decision for this host (or undefined if it does, directly or delegated). */
export function receiptChainProblem(r: Receipt, expect: ChainExpect): string | undefined {
  const d = r.delegation;
  if (!d) {
    if (r.body.via !== undefined) return `it names delegation ${r.body.via} but carries none`;
    return receiptProblem(r, expect);
  }
  if (r.body.via !== d.body.id)
    return `it carries delegation ${d.body.id}, but its signature covers ${r.body.via ?? "none"}`;
  for (const at of expect.now === undefined ? [r.body.at] : [r.body.at, expect.now]) {
    const bad = delegationProblem(d, { hostKey: expect.hostKey, shareId: r.body.shareId, at, revoked: expect.revoked });
    if (bad) return bad.message;
  }
  return receiptProblem(r, { ...expect, hostKey: approverKey(d) });
}

/** Who answered: the host itself, or the approver a delegation names. */
export function approvedBy(r: Receipt): string | undefined {
  return r.delegation?.body.name;
}
