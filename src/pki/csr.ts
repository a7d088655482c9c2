// PKCS#10 certificate requests: creating them, and checking one from a peer before anything is issued for it.
import { PkiError } from "./errors.ts";
import { spkiFingerprint } from "./fingerprint.ts";
import { subjectFor } from "./names.ts";
import { parseCsr } from "./parse.ts";
import { derToPem } from "./pem.ts";
import { x509 } from "./x509.ts";

// A P-256 CSR is well under 1 KiB; anything near this is garbage or an attempt to make the parser work hard.
const MAX_CSR_CHARS = 16 * 1024;

export async function createCsr(opts: { keys: CryptoKeyPair; commonName: string }): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: subjectFor(opts.commonName),
    keys: opts.keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
  });
  return derToPem(csr.rawData, "CERTIFICATE REQUEST");
}

export async function readCsr(csrPem: string): Promise<{ publicKey: CryptoKey; commonName: string; spki: string }> {
  if (csrPem.length > MAX_CSR_CHARS) {
    throw new PkiError(`certificate request is too large (${csrPem.length} bytes, limit ${MAX_CSR_CHARS})`);
  }
  const csr = parseCsr(csrPem);
  const alg = csr.publicKey.algorithm as EcKeyAlgorithm;
  if (alg.name !== "ECDSA" || alg.namedCurve !== "P-256") {
    throw new PkiError("certificate request key must be ECDSA P-256; regenerate the key and request");
  }
  // The self-signature proves the requester holds the private key for the public key it wants certified.
  const valid = await csr.verify().catch(() => false);
  if (!valid)
    throw new PkiError("certificate request signature is invalid; the request was corrupted or tampered with");
  const commonName = csr.subjectName.getField("CN")[0];
  if (!commonName) throw new PkiError("certificate request has no common name (CN)");
  const publicKey = await csr.publicKey.export({ name: "ECDSA", namedCurve: "P-256" }, ["verify"]);
  return { publicKey, commonName, spki: spkiFingerprint(csrPem) };
}
