// The running coordinator's signed head (GET /audit/head on its HTTP port): fetched, size-capped,
// validated and checked with the coordinator's certificate, so a verifier can tell a cut tail.
import { TesseraError } from "../errors.ts";
import { decodeJson } from "../validate.ts";
import { AuditHead, publicKeyOf, verifyHead } from "./checkpoint.ts";

export const HEAD_PATH = "/audit/head";
const MAX_BODY = 16 * 1024;

/** `http://host:8080` (the coordinator's HTTP address) or the full URL of its head. */
export function headUrl(text: string): URL {
  let u: URL;
  try {
    u = new URL(text.includes("://") ? text : `http://${text}`);
  } catch {
    throw new TesseraError(
      "config",
      `--against must be the coordinator's HTTP address, like http://127.0.0.1:8080 (got "${text}")`,
    );
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new TesseraError("config", `--against must be an http:// or https:// URL (got "${text}")`);
  if (u.pathname === "/" || u.pathname === "") u.pathname = HEAD_PATH;
  return u;
}

export async function fetchHead(url: URL, certPem: string, timeoutMs = 10_000): Promise<AuditHead> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: "error" });
  } catch (e) {
    throw new TesseraError(
      "connect",
      `could not fetch the coordinator's audit head from ${url}: ${(e as Error).message}`,
    );
  }
  const body = await readCapped(res, url);
  if (!res.ok) throw new TesseraError("connect", `${url} answered ${res.status}: ${body.trim().slice(0, 200)}`);
  const head = decodeJson(AuditHead, body, `audit head from ${url}`, (m) => new TesseraError("audit_broken", m));
  if (!verifyHead(publicKeyOf(certPem), head)) {
    throw new TesseraError(
      "audit_broken",
      `the audit head served by ${url} is not signed by the coordinator whose certificate was given: it is another coordinator, or someone between you and it`,
    );
  }
  return head;
}

async function readCapped(res: Response, url: URL): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body?.getReader();
  for (;;) {
    const r = await reader?.read();
    if (!r || r.done) break;
    size += r.value.length;
    if (size > MAX_BODY) {
      await reader!.cancel();
      throw new TesseraError("audit_broken", `${url} sent more than ${MAX_BODY} bytes: that is not an audit head`);
    }
    chunks.push(r.value);
  }
  return Buffer.concat(chunks).toString("utf8");
}
