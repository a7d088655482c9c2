// Signed checkpoints: the coordinator's key signs (seq, hash of everything before), so a verifier with
// the coordinator's certificate can tell the log up to that line is what the coordinator wrote.
import { createPublicKey, sign, verify, X509Certificate } from "node:crypto";

function message(seq: number, prev: string): Buffer {
  return Buffer.from(`tessera-audit-checkpoint\n${seq}\n${prev}`);
}

export function signCheckpoint(keyPem: string, seq: number, prev: string): string {
  return sign("sha256", message(seq, prev), keyPem).toString("base64");
}

/** `certPem` is the coordinator's certificate (or its public key in PEM). */
export function verifyCheckpoint(certPem: string, seq: number, prev: string, sig: string): boolean {
  const key = certPem.includes("BEGIN CERTIFICATE") ? new X509Certificate(certPem).publicKey : createPublicKey(certPem);
  try {
    return verify("sha256", message(seq, prev), key, Buffer.from(sig, "base64"));
  } catch {
    return false;
  }
}
