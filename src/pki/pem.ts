// PEM <-> DER conversion, strict enough that a truncated or mangled paste fails here with a clear message.
import { PkiError } from "./errors.ts";

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** First PEM block of `pem`, with its label, decoded. */
export function readPem(pem: string, what = "PEM input"): { label: string; der: Uint8Array<ArrayBuffer> } {
  const m = new RegExp(BLOCK.source).exec(pem);
  if (!m) throw new PkiError(`${what} is not PEM (expected a "-----BEGIN ...-----" block)`);
  const body = m[2]!.replace(/\s+/g, "");
  // Buffer.from silently skips junk, which would turn corruption into a confusing ASN.1 error later.
  if (!body || body.length % 4 !== 0 || !BASE64.test(body)) {
    throw new PkiError(`${what} has a corrupt ${m[1]} block (invalid base64); re-copy it in full`);
  }
  return { label: m[1]!, der: new Uint8Array(Buffer.from(body, "base64")) };
}

export function pemToDer(pem: string): Uint8Array<ArrayBuffer> {
  return readPem(pem).der;
}

export function derToPem(der: Uint8Array | ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der instanceof ArrayBuffer ? new Uint8Array(der) : der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** Every PEM block in `pem` (e.g. a chain), each newline-terminated like derToPem output. */
export function splitPemBlocks(pem: string): string[] {
  return [...pem.matchAll(BLOCK)].map((m) => `${m[0]}\n`);
}
