// A guest's long-term identity: a P-256 key that outlives joins (the TLS key is fresh per join). Each request
// carries the public half and a signature over what identifies that request, so a host can tell a returning
// guest from a stranger using the same name; the code's PAKE binds the key's fingerprint as well.
import { createPublicKey, sign, verify } from "node:crypto";
import { spkiFingerprint } from "./fingerprint.ts";

/** What the identity key signs: the request's per-join TLS key, the words the host reads, and what it redeems. */
export interface IdentityClaims {
  /** The per-join TLS key's fingerprint (SHA256:...), so the signature cannot be lifted onto another join. */
  tlsSpki: string;
  name: string;
  reason: string;
  /** `code NAMEPLATE` (the code fixes the target, and the PAKE confirms it) or `share ID TARGET`. */
  via: string;
}
/** As it travels: the identity's public key (base64 SPKI DER) and the signature (base64 DER ECDSA). */
export interface IdentityProof {
  pub: string;
  sig: string;
}

export const viaCode = (nameplate: string) => `code ${nameplate}`;
export const viaShare = (shareId: string, target: string) => `share ${shareId} ${target}`;

function message(c: IdentityClaims): Buffer {
  // Length-prefixed fields: a name cannot smuggle a separator into the reason.
  const parts = ["tessera-guest-identity-v1", c.tlsSpki, c.name, c.reason, c.via].map(
    (s) => `${Buffer.byteLength(s)}:${s}`,
  );
  return Buffer.from(parts.join("\n"));
}

/** The public half of an identity key (PKCS#8 PEM), as it travels: base64 SPKI DER. */
export function identityPublic(keyPem: string): string {
  return createPublicKey(keyPem).export({ type: "spki", format: "der" }).toString("base64");
}

/** Signs a request's claims with the identity key (PKCS#8 PEM). */
export function signIdentity(keyPem: string, c: IdentityClaims): IdentityProof {
  return { pub: identityPublic(keyPem), sig: sign("sha256", message(c), keyPem).toString("base64") };
}

/** The identity's fingerprint (SHA256:..., as for every other key), or undefined if `pub` is not a P-256 key. */
export function identityFingerprint(pub: string): string | undefined {
  try {
    const key = createPublicKey({ key: Buffer.from(pub, "base64"), format: "der", type: "spki" });
    if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") return undefined;
    return spkiFingerprint(pub);
  } catch {
    return undefined;
  }
}

/** Why this proof does not hold for these claims (undefined when it does). */
export function identityProblem(p: IdentityProof, c: IdentityClaims): string | undefined {
  if (!identityFingerprint(p.pub)) return "its identity key is not an ECDSA P-256 public key";
  try {
    const key = createPublicKey({ key: Buffer.from(p.pub, "base64"), format: "der", type: "spki" });
    if (verify("sha256", message(c), key, Buffer.from(p.sig, "base64"))) return undefined;
  } catch {
    // A malformed signature is just a signature that does not verify.
  }
  return "its identity signature does not verify for this request";
}
