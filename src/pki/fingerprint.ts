// Fingerprints users compare and pin: certificate SHA-256 (hex) and public-key SHA-256 (ssh-style base64).
import { createHash } from "node:crypto";
import { PkiError } from "./errors.ts";
import { parseCertificate, parseCsr } from "./parse.ts";
import { readPem } from "./pem.ts";
import { x509 } from "./x509.ts";

function sha256(data: Uint8Array | ArrayBuffer): Buffer {
  return createHash("sha256")
    .update(data instanceof ArrayBuffer ? new Uint8Array(data) : data)
    .digest();
}

export function certFingerprint(certPem: string): string {
  const { label, der } = readPem(certPem, "certificate");
  if (label !== "CERTIFICATE") throw new PkiError(`certificate should be a CERTIFICATE PEM block, got ${label}`);
  return sha256(der).toString("hex");
}

/** Key fingerprint of a certificate, CSR or PUBLIC KEY PEM; a non-PEM string is taken as base64 SPKI DER. */
export function spkiFingerprint(pemOrDer: string): string {
  let spki: Uint8Array | ArrayBuffer;
  if (!pemOrDer.includes("-----BEGIN")) {
    try {
      spki = new x509.PublicKey(Buffer.from(pemOrDer.trim(), "base64")).rawData;
    } catch {
      throw new PkiError("expected a certificate or CSR in PEM form (or a base64 SubjectPublicKeyInfo)");
    }
  } else {
    const { label, der } = readPem(pemOrDer);
    if (label === "CERTIFICATE") spki = parseCertificate(pemOrDer).publicKey.rawData;
    else if (label.endsWith("CERTIFICATE REQUEST")) spki = parseCsr(pemOrDer).publicKey.rawData;
    else if (label === "PUBLIC KEY") spki = der;
    else throw new PkiError(`cannot take a key fingerprint of a ${label} PEM block; pass a certificate or CSR`);
  }
  return `SHA256:${sha256(spki).toString("base64").replace(/=+$/, "")}`;
}

export function formatPin(hex: string): string {
  return `sha256:${hex}`;
}

const PIN = /^sha256:((?:[0-9a-f]{2}:?){31}[0-9a-f]{2})$/i;

export function parsePin(s: string): string {
  const m = PIN.exec(s.trim());
  if (!m) {
    const shown = s.length > 80 ? `${s.slice(0, 80)}...` : s;
    throw new PkiError(
      `invalid pin "${shown}": expected "sha256:" followed by the 64 hex digits of a certificate fingerprint`,
    );
  }
  return m[1]!.replace(/:/g, "").toLowerCase();
}
