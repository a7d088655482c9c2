// Validation and encoding of subject common names and SAN values, shared by certificate and CSR creation.
import { isIP } from "node:net";
import { PkiError } from "./errors.ts";
import type { x509 } from "./x509.ts";

/** Subject DN holding just a CN; built as JSON so commas or "=" in the name cannot inject extra attributes. */
export function subjectFor(commonName: string): x509.JsonName {
  // X.520 caps commonName at 64 characters and some TLS stacks enforce it.
  if (typeof commonName !== "string" || commonName.length < 1 || commonName.length > 64) {
    throw new PkiError(`common name must be 1-64 characters, got ${JSON.stringify(String(commonName).slice(0, 80))}`);
  }
  return [{ CN: [commonName] }];
}

/** "::1" and "[::1]" both count; zone ids ("fe80::1%eth0") cannot go in a certificate, so they do not. */
export function ipLiteral(name: string): string | null {
  const bare = name.startsWith("[") && name.endsWith("]") ? name.slice(1, -1) : name;
  return isIP(bare) !== 0 && !bare.includes("%") ? bare : null;
}

/** Canonical text the SAN encoder can parse: it does not understand embedded IPv4 ("::ffff:1.2.3.4"). */
export function encodableIp(ip: string): string {
  const bare = ipLiteral(ip);
  if (bare === null) throw new PkiError(`"${ip}" is not an IPv4 or IPv6 address`);
  return isIP(bare) === 4 ? bare : new URL(`http://[${bare}]`).hostname.slice(1, -1);
}

export function checkDnsName(name: string): string {
  // IA5String: ASCII only, so international names must already be punycode.
  if (!/^[\x21-\x7e]{1,253}$/.test(name) || ipLiteral(name) !== null) {
    throw new PkiError(
      `"${name}" is not a valid DNS name (international names must be punycode, IPs go in ipAddresses)`,
    );
  }
  return name;
}

export function checkUri(uri: string): string {
  if (!URL.canParse(uri) || !/^[\x21-\x7e]+$/.test(uri)) throw new PkiError(`"${uri}" is not a valid absolute URI`);
  return uri;
}
