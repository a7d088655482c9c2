// The host's signed consent receipts in the audit chain: each approve or deny line that carries one must
// verify, be signed by the key of the share's host (as the chain recorded it), and say what the line
// says. So a decision edited in the log, even with the chain rebuilt, or an approval a coordinator made
// up, does not pass `audit verify`. The host key the chain records is the coordinator's word: `--host-key`
// pins the real one, and a share whose recorded host key changes is reported.
import * as v from "valibot";
import { delegationSigner, describeDelegation } from "../pki/delegation.ts";
import { Receipt, receiptSigner } from "../wire/receipt.ts";
import { receiptChainProblem } from "../wire/receipt-chain.ts";
import type { AuditLine } from "./line.ts";

export class ReceiptCheck {
  /** Receipts checked and found good. */
  valid = 0;
  /** Shares whose recorded host key changed within the chain, said in words. */
  readonly keyChanges: string[] = [];
  /** Decisions a delegated approver signed, said in words ("seq 12: approved by laptop, delegated by host build-01 until ..."). */
  readonly delegated: string[] = [];
  private readonly hostOf = new Map<string, string>();

  /** pinned: the host keys the operator named (`--host-key`); a receipt must be signed by one of them. */
  constructor(private readonly pinned?: string[]) {}

  /** Why this line's receipt fails, or undefined (no receipt, or a good one). */
  line(rec: AuditLine): string | undefined {
    const f = rec as Record<string, unknown>;
    if (
      (rec.event === "share.open" || rec.event === "share.back") &&
      typeof f.shareId === "string" &&
      typeof f.hostKey === "string"
    ) {
      const was = this.hostOf.get(f.shareId);
      if (was !== undefined && was !== f.hostKey && this.keyChanges.length < 100)
        this.keyChanges.push(
          `share ${f.shareId}'s host key changed from ${was} to ${f.hostKey} (seq ${rec.seq}): the same share id served by another key`,
        );
      this.hostOf.set(f.shareId, f.hostKey);
    }
    if ((rec.event !== "approve" && rec.event !== "deny") || f.receipt === undefined) return undefined;
    let receipt: Receipt;
    try {
      receipt = v.parse(Receipt, JSON.parse(String(f.receipt)));
    } catch {
      return "carries a consent receipt that is not one";
    }
    // Pinned keys are the operator's word and beat the chain's; else the recorded host, else (a share opened
    // before the log's first line, rotated away) the receipt's own signer. A delegated receipt is the host's
    // through its delegation: the host key is the delegation's signer. A receipt whose key is not a key names
    // no signer: it is reported like any receipt that fails, not thrown (which stopped `audit verify`).
    let signer: string;
    try {
      signer = receipt.delegation ? delegationSigner(receipt.delegation) : receiptSigner(receipt);
    } catch {
      return "carries a consent receipt whose signing key is not a public key";
    }
    if (this.pinned && !this.pinned.includes(signer))
      return `has a consent receipt signed by ${signer}, which is not a host key you pinned (--host-key)`;
    const hostKey = this.pinned ? signer : (this.hostOf.get(String(f.shareId)) ?? "");
    const why = receiptChainProblem(receipt, {
      hostKey: hostKey || signer,
      guestKey: String(f.guestKey),
      target: receipt.body.target,
      decision: rec.event === "approve" ? "allow" : "deny",
      requestId: String(f.requestId),
      scope: receipt.body.scope,
    });
    if (why) return `has a consent receipt that does not match it: ${why}`;
    this.valid++;
    if (receipt.delegation && this.delegated.length < 1000) {
      const line = describeDelegation(receipt.delegation);
      this.delegated.push(`seq ${rec.seq}: ${rec.event === "approve" ? line : line.replace(/^approved/, "denied")}`);
    }
    return undefined;
  }
}
