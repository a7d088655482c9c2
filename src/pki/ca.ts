// Creating a self-signed CA and issuing leaf certificates from it.
import { PkiError } from "./errors.ts";
import { exportPrivateKeyPem, generateKeyPair, importPrivateKeyPem, publicKeyFromPrivatePem } from "./keys.ts";
import { checkDnsName, checkUri, encodableIp, ipLiteral, subjectFor } from "./names.ts";
import { parseCertificate } from "./parse.ts";
import { derToPem } from "./pem.ts";
import { x509 } from "./x509.ts";

const SIGNING = { name: "ECDSA", hash: "SHA-256" };
// Backdating absorbs small clock differences between issuer and verifier.
const CLOCK_SKEW_MS = 60_000;

function checkNow(now: Date): number {
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new PkiError("now must be a valid Date");
  return now.getTime();
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function randomSerial(): Uint8Array {
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0]! &= 0x7f; // serials must be positive, and this keeps the encoding at 16 bytes
  return serial;
}

function bytesEqual(a: ArrayBuffer, b: ArrayBuffer): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

export function sanForName(name: string): { dnsNames: string[]; ipAddresses: string[] } {
  const ip = ipLiteral(name);
  return ip === null ? { dnsNames: [name], ipAddresses: [] } : { dnsNames: [], ipAddresses: [ip] };
}

export async function createCA(opts: {
  commonName: string;
  now: Date;
  days?: number;
}): Promise<{ certPem: string; keyPem: string }> {
  const now = checkNow(opts.now);
  const days = opts.days ?? 3650;
  if (!Number.isFinite(days) || days <= 0)
    throw new PkiError(`CA validity must be a positive number of days, got ${days}`);
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: hex(randomSerial()),
    name: subjectFor(opts.commonName),
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + days * 86_400_000),
    keys,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: derToPem(cert.rawData, "CERTIFICATE"), keyPem: await exportPrivateKeyPem(keys.privateKey) };
}

const EKU = {
  server: [x509.ExtendedKeyUsage.serverAuth],
  client: [x509.ExtendedKeyUsage.clientAuth],
  both: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
};

export async function issueCert(opts: {
  caCertPem: string;
  caKeyPem: string;
  publicKey: CryptoKey;
  commonName: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  uris?: string[];
  usage: "server" | "client" | "both";
  now: Date;
  validForSeconds: number;
  serial?: Uint8Array;
}): Promise<string> {
  const now = checkNow(opts.now);
  if (!Number.isFinite(opts.validForSeconds) || opts.validForSeconds <= 0) {
    throw new PkiError(`certificate lifetime must be a positive number of seconds, got ${opts.validForSeconds}`);
  }
  const eku = EKU[opts.usage];
  if (!eku) throw new PkiError(`certificate usage must be "server", "client" or "both", got "${opts.usage}"`);
  const alg = opts.publicKey.algorithm as EcKeyAlgorithm;
  if (opts.publicKey.type !== "public" || alg.name !== "ECDSA" || alg.namedCurve !== "P-256") {
    throw new PkiError("certificates can only be issued for ECDSA P-256 public keys");
  }
  const serial = opts.serial ?? randomSerial();
  // RFC 5280: at most 20 octets once a sign byte is added, and never zero.
  if (serial.length < 1 || serial.length > (serial[0]! & 0x80 ? 19 : 20) || serial.every((b) => b === 0)) {
    throw new PkiError("certificate serial must be 1-20 bytes, non-zero, and fit in 20 bytes as a positive integer");
  }

  const ca = parseCertificate(opts.caCertPem, "CA certificate");
  const caKey = await importPrivateKeyPem(opts.caKeyPem);
  const caPublic = await crypto.subtle.exportKey("spki", await publicKeyFromPrivatePem(opts.caKeyPem));
  if (!bytesEqual(caPublic, ca.publicKey.rawData)) {
    throw new PkiError("CA private key does not match the CA certificate; check that both files come from the same CA");
  }
  const ski = ca.getExtension(x509.SubjectKeyIdentifierExtension);
  const aki = ski
    ? new x509.AuthorityKeyIdentifierExtension(ski.keyId)
    : await x509.AuthorityKeyIdentifierExtension.create(ca.publicKey);

  const names: x509.JsonGeneralName[] = [
    ...(opts.dnsNames ?? []).map((n) => ({ type: "dns" as const, value: checkDnsName(n) })),
    ...(opts.ipAddresses ?? []).map((n) => ({ type: "ip" as const, value: encodableIp(n) })),
    ...(opts.uris ?? []).map((n) => ({ type: "url" as const, value: checkUri(n) })),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(eku),
    aki,
  ];
  // An empty SAN extension is invalid DER, so leave it out when there are no names.
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));

  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: hex(serial),
    subject: subjectFor(opts.commonName),
    issuer: ca.subjectName,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + opts.validForSeconds * 1000),
    publicKey: opts.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGNING,
    extensions,
  });
  return derToPem(cert.rawData, "CERTIFICATE");
}
