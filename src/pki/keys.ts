// ECDSA P-256 key generation and PKCS#8 PEM import/export (the format node:tls accepts).
import { PkiError } from "./errors.ts";
import { derToPem, readPem } from "./pem.ts";

const EC_P256: EcKeyImportParams = { name: "ECDSA", namedCurve: "P-256" };

export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]);
}

export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  if (key.type !== "private") throw new PkiError("expected a private key to export");
  return derToPem(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

export async function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
  const { label, der } = readPem(pem, "private key");
  if (label === "EC PRIVATE KEY") {
    throw new PkiError(
      'private key is in SEC1 "EC PRIVATE KEY" format; convert it with: openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.pkcs8.pem',
    );
  }
  if (label === "ENCRYPTED PRIVATE KEY") {
    throw new PkiError("private key is encrypted; decrypt it first with: openssl pkcs8 -in key.pem -out key.plain.pem");
  }
  if (label !== "PRIVATE KEY") throw new PkiError(`private key should be a PRIVATE KEY PEM block, got ${label}`);
  try {
    // Extractable so the public half can be derived from it (publicKeyFromPrivatePem).
    return await crypto.subtle.importKey("pkcs8", der, EC_P256, true, ["sign"]);
  } catch (err) {
    throw new PkiError("private key is not an ECDSA P-256 key in PKCS#8 format", { cause: err });
  }
}

export async function publicKeyFromPrivatePem(pem: string): Promise<CryptoKey> {
  const jwk = await crypto.subtle.exportKey("jwk", await importPrivateKeyPem(pem));
  // key_ops says "sign", which would conflict with importing for "verify".
  const { d: _d, key_ops: _ops, ...pub } = jwk;
  return crypto.subtle.importKey("jwk", pub, EC_P256, true, ["verify"]);
}
