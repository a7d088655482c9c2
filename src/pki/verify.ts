// Checking a certificate against a CA at a given time, and summarising a certificate for display or pinning.
import { PkiError } from "./errors.ts";
import { certFingerprint, spkiFingerprint } from "./fingerprint.ts";
import { parseCertificate } from "./parse.ts";
import { x509 } from "./x509.ts";

/** Whether this certificate is a CA's (basic constraints cA), i.e. one that signs certificates, not a server's. */
export function isCaCertificate(certPem: string): boolean {
  return parseCertificate(certPem).getExtension(x509.BasicConstraintsExtension)?.ca === true;
}

export async function verifyIssuedBy(certPem: string, caCertPem: string, now: Date): Promise<void> {
  const cert = parseCertificate(certPem);
  const ca = parseCertificate(caCertPem, "CA certificate");
  if (!Buffer.from(cert.issuerName.toArrayBuffer()).equals(Buffer.from(ca.subjectName.toArrayBuffer()))) {
    throw new PkiError(`certificate was not issued by this CA (issuer is "${cert.issuer}", CA is "${ca.subject}")`);
  }
  // Same-named CAs are easy to create, so only the signature proves which one issued it.
  const signed = await cert.verify({ publicKey: ca.publicKey, signatureOnly: true }).catch(() => false);
  if (!signed)
    throw new PkiError(`certificate was not issued by this CA (signature does not verify with "${ca.subject}")`);
  if (now.getTime() < cert.notBefore.getTime()) {
    throw new PkiError(`certificate is not valid until ${cert.notBefore.toISOString()}; check the system clock`);
  }
  if (now.getTime() > cert.notAfter.getTime()) {
    throw new PkiError(`certificate expired at ${cert.notAfter.toISOString()}`);
  }
}

export function certInfo(certPem: string): {
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  uris: string[];
  notBefore: Date;
  notAfter: Date;
  serialHex: string;
  spki: string;
  fingerprint: string;
} {
  const cert = parseCertificate(certPem);
  const names = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [];
  const of = (type: string) => names.filter((n) => n.type === type).map((n) => n.value);
  return {
    commonName: cert.subjectName.getField("CN")[0] ?? "",
    dnsNames: of("dns"),
    ipAddresses: of("ip"),
    uris: of("url"),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    serialHex: cert.serialNumber.toLowerCase(),
    spki: spkiFingerprint(certPem),
    fingerprint: certFingerprint(certPem),
  };
}
