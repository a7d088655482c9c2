// Signed consent receipts: the host signs its own decision (request, guest key, target, scope, time,
// yes or no) with its host key. The coordinator relays and logs the receipt but cannot make one: an
// approval that verifies came from the holder of the host's key. The agent serves a session only with a
// receipt its own host key signed for that guest key, so a coordinator that swaps the guest's key, or
// approves on its own, gets nothing served.
import { createPublicKey, sign, verify } from "node:crypto";
import * as v from "valibot";
import { Scope } from "./scope.ts";
import { spkiFingerprint } from "../pki/fingerprint.ts";
import { lengthPrefixed } from "../pki/signed-message.ts";
import { Delegation } from "../pki/delegation.ts";

const id = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/));
const spki = v.pipe(v.string(), v.regex(/^SHA256:[A-Za-z0-9+/]{43}$/));

export const ReceiptBody = v.strictObject({
  /** 2: the signed message is length-prefixed (v1's newline-joined one still verifies). */
  v: v.picklist([1, 2]),
  requestId: id,
  shareId: id,
  guestKey: spki,
  target: v.pipe(v.string(), v.maxLength(300)),
  decision: v.picklist(["allow", "deny"]),
  scope: v.optional(Scope),
  at: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** The signer's public key (base64 SubjectPublicKeyInfo DER), so a receipt verifies on its own. */
  hostPub: v.pipe(v.string(), v.maxLength(400), v.regex(/^[A-Za-z0-9+/=]+$/)),
  /** The guest's long-term identity key (SHA256:...), when it sent one (pki/identity.ts). */
  guestId: v.optional(spki),
  /** Signed by a delegated approver: the id of the host's delegation that vouches for its key (pki/delegation.ts). */
  via: v.optional(id),
});
export type ReceiptBody = v.InferOutput<typeof ReceiptBody>;

export const Receipt = v.strictObject({
  body: ReceiptBody,
  sig: v.pipe(v.string(), v.maxLength(200), v.regex(/^[A-Za-z0-9+/=]+$/)),
  /** The host's delegation to the approver that signed this receipt (receipt-chain.ts checks the chain). */
  delegation: v.optional(Delegation),
});
export type Receipt = v.InferOutput<typeof Receipt>;

/** The signed fields, in a fixed order, so signer and verifier agree without canonical JSON. */
function fields(b: ReceiptBody): string[] {
  const scope = b.scope ? [b.scope.ttlMs ?? "", b.scope.streams ?? "", b.scope.readOnly ? "ro" : ""].join(",") : "";
  return [
    b.requestId,
    b.shareId,
    b.guestKey,
    b.target,
    b.decision,
    scope,
    String(b.at),
    b.hostPub,
    ...(b.guestId ? [`id:${b.guestId}`] : []),
    ...(b.via ? [`via:${b.via}`] : []),
  ];
}

/**
 * The signed bytes. Version 2 prefixes each field with its length (4 bytes, big-endian), so no field's
 * content can shift the boundary between two fields; version 1 joined them with newlines and still verifies.
 */
function message(b: ReceiptBody): Buffer {
  if (b.v === 1) return Buffer.from(["tessera-consent-receipt-v1", ...fields(b)].join("\n"));
  return lengthPrefixed(["tessera-consent-receipt-v2", ...fields(b)]);
}

/**
 * Signs a decision with the host's private key (PEM); `hostPub` is taken from that key. An approver signs with
 * its own key and passes the host's delegation, whose id the signature then covers.
 */
export function signReceipt(
  keyPem: string,
  b: Omit<ReceiptBody, "v" | "hostPub" | "via">,
  delegation?: Delegation,
): Receipt {
  const hostPub = createPublicKey(keyPem).export({ type: "spki", format: "der" }).toString("base64");
  const body: ReceiptBody = { v: 2, ...b, hostPub, ...(delegation ? { via: delegation.body.id } : {}) };
  const sig = sign("sha256", message(body), keyPem).toString("base64");
  return delegation ? { body, sig, delegation } : { body, sig };
}

/** The key fingerprint (SHA256:...) of the receipt's signer. */
export function receiptSigner(r: Receipt): string {
  return spkiFingerprint(r.body.hostPub);
}

/**
 * Why this receipt does not prove the decision expected of it (or undefined if it does): a bad
 * signature, another signer than `hostKey`, or a field that differs from what is expected.
 */
export function receiptProblem(
  r: Receipt,
  expect: {
    hostKey: string;
    guestKey: string;
    target: string;
    decision: "allow" | "deny";
    requestId?: string;
    shareId?: string;
    scope?: Scope;
  },
): string | undefined {
  let signer: string;
  try {
    signer = receiptSigner(r);
    const key = createPublicKey({ key: Buffer.from(r.body.hostPub, "base64"), format: "der", type: "spki" });
    if (!verify("sha256", message(r.body), key, Buffer.from(r.sig, "base64"))) return "its signature does not verify";
  } catch {
    return "its signature does not verify";
  }
  if (signer !== expect.hostKey) return `it is signed by ${signer}, not by the host's key ${expect.hostKey}`;
  const b = r.body;
  if (b.guestKey !== expect.guestKey) return `it approves guest key ${b.guestKey}, not ${expect.guestKey}`;
  if (b.target !== expect.target) return `it is for ${b.target}, not ${expect.target}`;
  if (b.decision !== expect.decision) return `it records "${b.decision}", not "${expect.decision}"`;
  if (expect.requestId !== undefined && b.requestId !== expect.requestId)
    return `it is for request ${b.requestId}, not ${expect.requestId}`;
  if (expect.shareId !== undefined && b.shareId !== expect.shareId)
    return `it is for share ${b.shareId}, not ${expect.shareId}`;
  const [x, y] = [b.scope ?? {}, expect.scope ?? {}];
  if (x.ttlMs !== y.ttlMs || x.streams !== y.streams || !!x.readOnly !== !!y.readOnly)
    return "its scope is not the session's";
  return undefined;
}
