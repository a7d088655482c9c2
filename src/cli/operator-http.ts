// The operator's client for the coordinator's HTTP port (revoke, admin): the token is a bearer credential,
// so it goes over HTTPS, or over plain HTTP only to this machine; each failure says what to do about it.
import fs from "node:fs";
import { rootCertificates } from "node:tls";
import { ConfigError, TesseraError, errorMessage } from "../errors.ts";
import { isLoopbackUrl, splitAddress } from "../wire/address.ts";
import { coordinatorAddress, homeFile, readCa, readConfig, readRequired } from "./home.ts";

export { isLoopbackUrl };

const TIMEOUT_MS = 15_000;

/**
 * The base URLs to try, best first: --url as given (refused if it is plain HTTP to another machine), else
 * the linked coordinator's HTTPS port, then its plain HTTP only when that is this machine.
 */
export function operatorBases(explicit: string | undefined): string[] {
  const given = explicit || readConfig().http;
  if (given) {
    const url = parseUrl(given);
    if (url.protocol === "http:" && !isLoopbackUrl(url)) throw plainHttpRefused(url);
    return [given.replace(/\/$/, "")];
  }
  const host = splitAddress(coordinatorAddress()).host;
  const https = `https://${host.includes(":") ? `[${host}]` : host}:8080`;
  return isLoopbackUrl(new URL(https)) ? [https, https.replace(/^https:/, "http:")] : [https];
}

/**
 * POST or GET with the operator token; a connection failure on one base moves on to the next. A 401 or
 * 403 (the token is wrong, or the coordinator has none) is thrown as a one-line fix; other answers return.
 */
export async function operatorFetch(
  explicitUrl: string | undefined,
  path: string,
  init: RequestInit = {},
): Promise<Response> {
  const token = readRequired(
    homeFile("operator-token"),
    "no operator token on this machine: run `tessera token HEX` first",
  ).trim();
  const bases = operatorBases(explicitUrl);
  const failures: string[] = [];
  for (const base of bases) {
    // An HTTPS endpoint may use a certificate from the deployment's CA or from a public one: trust both.
    const tls =
      base.startsWith("https:") && fs.existsSync(homeFile("ca.crt"))
        ? { tls: { ca: [...rootCertificates, readCa()] } }
        : {};
    let res: Response;
    try {
      res = await fetch(`${base}${path}`, {
        signal: AbortSignal.timeout(TIMEOUT_MS),
        ...init,
        headers: { ...init.headers, authorization: `Bearer ${token}` },
        ...tls,
      });
    } catch (err) {
      failures.push(`${base}: ${unreachable(base, err)}`);
      continue;
    }
    if (res.status === 401) {
      throw new TesseraError(
        "unauthorized",
        `the coordinator at ${base} refused the operator token (401): the token saved here is not the one in its --certs directory; copy that operator-token and run \`tessera token HEX\``,
      );
    }
    if (res.status === 403) {
      throw new TesseraError(
        "unauthorized",
        `the coordinator at ${base} has no operator token configured (403): create operator-token in its --certs directory (\`(umask 077; openssl rand -hex 32 > DIR/operator-token)\`), restart it, and run \`tessera token HEX\` here`,
      );
    }
    return res;
  }
  throw new TesseraError(
    "connect",
    `cannot reach the coordinator's HTTP port: ${failures.join("; ")}${explicitUrl ? "" : "; give its address with --url https://HOST:PORT"}`,
  );
}

/** An operator call answered with JSON; any other answer is an error carrying the coordinator's own words. */
export async function operatorJson(
  explicitUrl: string | undefined,
  path: string,
  init: RequestInit = {},
): Promise<unknown> {
  const res = await operatorFetch(explicitUrl, path, init);
  const body = await res.text();
  if (!res.ok) throw new TesseraError("admin", `the coordinator refused (${res.status}): ${body.trim().slice(0, 500)}`);
  try {
    return JSON.parse(body);
  } catch {
    throw new TesseraError(
      "admin",
      `the coordinator's answer to ${path} is not JSON: is --url this coordinator's HTTP port?`,
    );
  }
}

/** Why a base could not be reached, in terms of what to change. */
function unreachable(base: string, err: unknown): string {
  const code = (err as { code?: string; name?: string }).code ?? (err as { name?: string }).name ?? "";
  const https = base.startsWith("https:");
  if (code === "ECONNREFUSED") return "connection refused (is the coordinator running, with --http on this address?)";
  if (code === "ENOTFOUND") return "host not found";
  if (code === "TimeoutError" || code === "ETIMEDOUT") return "timed out";
  if (https && code === "EPROTO")
    return "it does not speak HTTPS there (start the coordinator with --http-cert/--http-key, or on its own machine use --url http://127.0.0.1:PORT)";
  if (!https && code === "ECONNRESET")
    return "the connection was reset (it may serve HTTPS there: use --url https://...)";
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code))
    return "its certificate is not trusted here (run `tessera link HOST:PORT --ca-file ca.crt` so this machine trusts the deployment's CA)";
  return errorMessage(err);
}

function parseUrl(s: string): URL {
  try {
    const u = new URL(s);
    if (u.protocol === "http:" || u.protocol === "https:") return u;
  } catch {}
  throw new ConfigError(`"${s}" is not an http:// or https:// URL`);
}

function plainHttpRefused(url: URL): ConfigError {
  return new ConfigError(
    `refusing to send the operator token over plain HTTP to ${url.host}: anyone on the path could read it. ` +
      `Use https://${url.host} (the coordinator serves HTTPS with --http-cert/--http-key), or run this on the coordinator's machine against http://127.0.0.1`,
  );
}
