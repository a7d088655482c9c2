// Host enrolment tokens: "TSE1.<id>.<secret>.<CA sha256>", one use each; the CA pin lets a new host
// check it reached the right coordinator before it sends the secret (as `kubeadm join` does).
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import * as v from "valibot";
import { RefusedError } from "../errors.ts";

export const EnrollRecord = v.strictObject({
  id: v.pipe(v.string(), v.regex(/^[0-9a-f]{8}$/)),
  hash: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
  expiresAt: v.number(),
});
export type EnrollRecord = v.InferOutput<typeof EnrollRecord>;
export const EnrollRecords = v.array(EnrollRecord);

const TOKEN_RE = /^TSE1\.([0-9a-f]{8})\.([A-Za-z0-9_-]{32})\.([0-9a-f]{64})$/;

export function makeEnrollToken(
  caFingerprintHex: string,
  ttlMs: number,
  now: number,
): { token: string; record: EnrollRecord } {
  const id = randomBytes(4).toString("hex");
  const secret = randomBytes(24).toString("base64url");
  return {
    token: `TSE1.${id}.${secret}.${caFingerprintHex}`,
    record: { id, hash: sha256Hex(secret), expiresAt: now + ttlMs },
  };
}

export function parseEnrollToken(token: string): { id: string; secret: string; caPin: string } {
  const m = TOKEN_RE.exec(token.trim());
  if (!m)
    throw new RefusedError(
      "bad_token",
      "that is not a tessera enrolment token (expected TSE1.<id>.<secret>.<ca-hash>, as written by `tessera ca` to enroll-token)",
    );
  return { id: m[1]!, secret: m[2]!, caPin: m[3]! };
}

/** Returns the token's id if valid now; used-ness is checked against the store by the caller. */
export function checkEnrollToken(token: string, records: EnrollRecord[], now: number): string {
  const { id, secret } = parseEnrollToken(token);
  const rec = records.find((r) => r.id === id);
  const ok = rec !== undefined && timingSafeEqual(Buffer.from(rec.hash, "hex"), Buffer.from(sha256Hex(secret), "hex"));
  if (!ok)
    throw new RefusedError(
      "bad_token",
      "enrolment token not recognised by this coordinator; ask the operator for a new one",
    );
  if (rec.expiresAt <= now)
    throw new RefusedError(
      "token_expired",
      `enrolment token expired at ${new Date(rec.expiresAt).toISOString()}; ask the operator for a new one`,
    );
  return id;
}

function sha256Hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}
