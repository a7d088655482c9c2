// A host's delegation of its yes to another device: the host key signs {approver key, name, shares, expiry},
// and a receipt signed by that approver key then counts as the host's own decision, for those shares until
// then. The coordinator relays delegations but cannot make or widen one: every field is under the host's
// signature, length-prefixed like receipts v2.
import { createPublicKey, randomBytes, sign, verify } from "node:crypto";
import * as v from "valibot";
import { TesseraError } from "../errors.ts";
import { issueText } from "../validate.ts";
import { spkiFingerprint } from "./fingerprint.ts";
import { lengthPrefixed } from "./signed-message.ts";

const id = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/));
const b64 = (max: number) => v.pipe(v.string(), v.maxLength(max), v.regex(/^[A-Za-z0-9+/=]+$/));
const epochMs = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(8.64e15));
/** Most share ids one delegation names (more: delegate all). */
export const MAX_DELEGATED_SHARES = 64;
/** An approver's name: what the host types and what every "approved by" line shows. */
export const APPROVER_NAME = /^[A-Za-z0-9_.-]{1,32}$/;

export const DelegationBody = v.strictObject({
  v: v.literal(1),
  /** Random, names this delegation in the host's book and in removals. */
  id,
  name: v.pipe(v.string(), v.regex(APPROVER_NAME, "must be 1-32 letters, digits, '.', '_' or '-'")),
  /** The host's enrolled name, for "delegated by host build-01". */
  hostName: v.pipe(v.string(), v.maxLength(64), v.regex(/^[^\x00-\x1f\x7f]*$/)),
  /** The approver's public key (base64 SubjectPublicKeyInfo DER): the only key whose receipts this delegation vouches for. */
  approverPub: b64(400),
  /** Share ids the approver may answer for, or "*" for every share of this host. */
  shares: v.union([v.literal("*"), v.pipe(v.array(id), v.minLength(1), v.maxLength(MAX_DELEGATED_SHARES))]),
  issuedAt: epochMs,
  expiresAt: epochMs,
  /** The host's public key (base64 SPKI DER), the signer. */
  hostPub: b64(400),
});
export type DelegationBody = v.InferOutput<typeof DelegationBody>;

export const Delegation = v.strictObject({ body: DelegationBody, sig: b64(200) });
export type Delegation = v.InferOutput<typeof Delegation>;

export type DelegationRefusal = "bad_signature" | "wrong_signer" | "expired" | "removed" | "share_not_covered";

/** Why a delegation does not vouch for an approver's receipt; `reason` says it in words for the host's log. */
export class DelegationError extends TesseraError {
  override name = "DelegationError";
  constructor(
    readonly refusal: DelegationRefusal | "malformed",
    message: string,
  ) {
    super("bad_delegation", message);
  }
}

function message(b: DelegationBody): Buffer {
  const shares = b.shares === "*" ? "*" : lengthPrefixed(b.shares);
  return lengthPrefixed([
    "tessera-approver-delegation-v1",
    b.id,
    b.name,
    b.hostName,
    b.approverPub,
    b.shares === "*" ? "all" : "list",
    shares,
    String(b.issuedAt),
    String(b.expiresAt),
    b.hostPub,
  ]);
}

/** Signs a delegation with the host's private key (PEM); `hostPub` is taken from that key, the id is fresh. */
export function signDelegation(
  hostKeyPem: string,
  b: Omit<DelegationBody, "v" | "id" | "hostPub"> & { id?: string },
): Delegation {
  const hostPub = createPublicKey(hostKeyPem).export({ type: "spki", format: "der" }).toString("base64");
  const body = v.parse(DelegationBody, { ...b, v: 1, id: b.id ?? randomBytes(12).toString("base64url"), hostPub });
  return { body, sig: sign("sha256", message(body), hostKeyPem).toString("base64") };
}

/** Reads a delegation from untrusted JSON; anything else is a DelegationError("malformed"), never another throw. */
export function parseDelegation(json: unknown): Delegation {
  const r = v.safeParse(Delegation, json);
  if (!r.success) throw new DelegationError("malformed", `not an approver delegation${issueText(r.issues)}`);
  return r.output;
}

/** The approver's key fingerprint (SHA256:...), the signer its receipts must have. */
export function approverKey(d: Delegation): string {
  return spkiFingerprint(d.body.approverPub);
}

/** The host key fingerprint that signed it (whether the signature holds is delegationProblem's question). */
export function delegationSigner(d: Delegation): string {
  return spkiFingerprint(d.body.hostPub);
}

export function coversShare(d: Delegation, shareId: string): boolean {
  return d.body.shares === "*" || d.body.shares.includes(shareId);
}

/**
 * Why this delegation does not let its approver answer for `shareId` at `at` on behalf of `hostKey` (or undefined):
 * a bad signature, another host's key, past its expiry, removed by the host, or a share it does not name.
 */
export function delegationProblem(
  d: Delegation,
  expect: { hostKey: string; shareId?: string; at: number; revoked?: (d: Delegation) => string | undefined },
): DelegationError | undefined {
  const b = d.body;
  let signer: string;
  try {
    signer = delegationSigner(d);
    const key = createPublicKey({ key: Buffer.from(b.hostPub, "base64"), format: "der", type: "spki" });
    if (!verify("sha256", message(b), key, Buffer.from(d.sig, "base64")))
      return new DelegationError("bad_signature", `approver ${b.name}'s delegation: its signature does not verify`);
    approverKey(d);
  } catch {
    return new DelegationError("bad_signature", `approver ${b.name}'s delegation: its signature does not verify`);
  }
  if (signer !== expect.hostKey)
    return new DelegationError(
      "wrong_signer",
      `approver ${b.name}'s delegation is signed by ${signer}, not by this host's key ${expect.hostKey}`,
    );
  if (expect.at >= b.expiresAt || expect.at < b.issuedAt)
    return new DelegationError(
      "expired",
      `approver ${b.name}'s delegation is valid ${new Date(b.issuedAt).toISOString()} to ${new Date(b.expiresAt).toISOString()}, not at ${new Date(expect.at).toISOString()}`,
    );
  if (expect.shareId !== undefined && !coversShare(d, expect.shareId))
    return new DelegationError(
      "share_not_covered",
      `approver ${b.name} may answer for ${(b.shares as string[]).join(", ")}, not for share ${expect.shareId}`,
    );
  // Last: the host's own book answers for what the signed fields cannot (a removal, or a delegation it never kept).
  const gone = expect.revoked?.(d);
  if (gone) return new DelegationError("removed", `approver ${b.name}: ${gone}`);
  return undefined;
}

/** How far an attach proof's time may be from the coordinator's clock. */
export const ATTACH_PROOF_SKEW_MS = 5 * 60_000;

const attachMessage = (d: Delegation, at: number) =>
  lengthPrefixed(["tessera-approver-attach-v1", d.body.id, String(at)]);

/** The approver's proof, for the coordinator, that it holds the key its delegation names (not a copy of the delegation). */
export function attachProof(approverKeyPem: string, d: Delegation, at: number): string {
  return sign("sha256", attachMessage(d, at), approverKeyPem).toString("base64");
}

/** Why an attach proof does not hold (or undefined): not signed by the delegation's approver key, or too far in time. */
export function attachProofProblem(d: Delegation, at: number, proof: string, now: number): string | undefined {
  if (Math.abs(now - at) > ATTACH_PROOF_SKEW_MS)
    return `its time ${new Date(at).toISOString()} is more than ${ATTACH_PROOF_SKEW_MS / 60_000} minutes from this coordinator's clock`;
  try {
    const key = createPublicKey({ key: Buffer.from(d.body.approverPub, "base64"), format: "der", type: "spki" });
    if (verify("sha256", attachMessage(d, at), key, Buffer.from(proof, "base64"))) return undefined;
  } catch {
    // fall through: a key that does not load proves nothing
  }
  return "it is not signed by the approver key its delegation names";
}

/** "approved by laptop, delegated by host build-01 until 2027-03-01" */
export function describeDelegation(d: Delegation): string {
  const host = d.body.hostName ? `host ${d.body.hostName}` : `host key ${delegationSigner(d)}`;
  return `approved by ${d.body.name}, delegated by ${host} until ${new Date(d.body.expiresAt).toISOString().slice(0, 10)}`;
}
