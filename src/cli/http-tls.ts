// --http-cert/--http-key: read and check the pair before anything listens, so a typo or a
// mismatched key is a clear error, not an OpenSSL code from deep inside the HTTP server.
import { X509Certificate, createPrivateKey } from "node:crypto";
import { ConfigError } from "../errors.ts";
import { readRequired } from "./home.ts";

/** Both or neither; each must be a readable PEM file, checked here so a typo fails before any socket opens. */
export function readHttpTls(
  certFile: string | undefined,
  keyFile: string | undefined,
): { cert: string; key: string } | undefined {
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile)
    throw new ConfigError(
      "--http-cert and --http-key go together: give both to serve HTTPS, or neither for plain HTTP",
    );
  const cert = readRequired(certFile, "--http-cert file not found");
  const key = readRequired(keyFile, "--http-key file not found");
  if (!cert.includes("-----BEGIN CERTIFICATE-----"))
    throw new ConfigError(`--http-cert ${certFile} is not a PEM certificate`);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key))
    throw new ConfigError(`--http-key ${keyFile} is not a PEM private key`);
  let matches: boolean;
  try {
    matches = new X509Certificate(cert).checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw new ConfigError(`--http-cert/--http-key: cannot read them (${(err as Error).message})`, { cause: err });
  }
  if (!matches) throw new ConfigError(`--http-key ${keyFile} is not the key of the certificate in ${certFile}`);
  return { cert, key };
}
