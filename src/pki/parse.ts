// Parses certificates and CSRs, turning library exceptions into PkiErrors that say which input was bad.
import { errorMessage as reason } from "../errors.ts";
import { PkiError } from "./errors.ts";
import { readPem } from "./pem.ts";
import { x509 } from "./x509.ts";

export function parseCertificate(pem: string, what = "certificate"): x509.X509Certificate {
  const { label, der } = readPem(pem, what);
  if (label !== "CERTIFICATE") throw new PkiError(`${what} should be a CERTIFICATE PEM block, got ${label}`);
  try {
    return new x509.X509Certificate(der);
  } catch (err) {
    throw new PkiError(`${what} could not be parsed: ${reason(err)}`);
  }
}

export function parseCsr(pem: string): x509.Pkcs10CertificateRequest {
  const { label, der } = readPem(pem, "certificate request");
  if (label !== "CERTIFICATE REQUEST" && label !== "NEW CERTIFICATE REQUEST") {
    throw new PkiError(`certificate request should be a CERTIFICATE REQUEST PEM block, got ${label}`);
  }
  try {
    return new x509.Pkcs10CertificateRequest(der);
  } catch (err) {
    throw new PkiError(`certificate request could not be parsed: ${reason(err)}`);
  }
}
