// The host's signed consent receipts in the audit chain: each approve or deny line that carries one must
// verify, be signed by the key of the share's host (as the chain recorded it), and say what the line
// says. So a decision edited in the log, even with the chain rebuilt, or an approval a coordinator made
// up, does not pass `audit verify`.
import * as v from "valibot";
import { Receipt, receiptProblem, receiptSigner } from "../wire/receipt.ts";
import type { AuditLine } from "./line.ts";

export class ReceiptCheck {
  /** Receipts checked and found good. */
  valid = 0;
  private readonly hostOf = new Map<string, string>();

  /** Why this line's receipt fails, or undefined (no receipt, or a good one). */
  line(rec: AuditLine): string | undefined {
    const f = rec as Record<string, unknown>;
    if (
      (rec.event === "share.open" || rec.event === "share.back") &&
      typeof f.shareId === "string" &&
      typeof f.hostKey === "string"
    ) {
      this.hostOf.set(f.shareId, f.hostKey);
    }
    if ((rec.event !== "approve" && rec.event !== "deny") || f.receipt === undefined) return undefined;
    let receipt: Receipt;
    try {
      receipt = v.parse(Receipt, JSON.parse(String(f.receipt)));
    } catch {
      return "carries a consent receipt that is not one";
    }
    // A share opened before the log's first line (rotated away) has no recorded host: its own signer then.
    // A receipt whose key is not a key names no signer: it is reported like any receipt that fails, not
    // thrown (which stopped `audit verify` at that line instead of naming it).
    let hostKey = this.hostOf.get(String(f.shareId)) ?? "";
    if (!hostKey) {
      try {
        hostKey = receiptSigner(receipt);
      } catch {
        return "carries a consent receipt whose signing key is not a public key";
      }
    }
    const why = receiptProblem(receipt, {
      hostKey,
      guestKey: String(f.guestKey),
      target: receipt.body.target,
      decision: rec.event === "approve" ? "allow" : "deny",
      requestId: String(f.requestId),
      scope: receipt.body.scope,
    });
    if (why) return `has a consent receipt that does not match it: ${why}`;
    this.valid++;
    return undefined;
  }
}
