// A coordinator's signing identity for audit-log tests: a CA, and a key with its certificate issued by it.
import { createCA, exportPrivateKeyPem, generateKeyPair, issueCert } from "../src/pki/index.ts";

export async function coordinatorIdentity(): Promise<{ keyPem: string; certPem: string; caCertPem: string }> {
  const ca = await createCA({ commonName: "t", now: new Date() });
  const keys = await generateKeyPair();
  const keyPem = await exportPrivateKeyPem(keys.privateKey);
  const certPem = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    publicKey: keys.publicKey,
    commonName: "coord",
    usage: "server",
    now: new Date(),
    validForSeconds: 3600,
  });
  return { keyPem, certPem, caCertPem: ca.certPem };
}
