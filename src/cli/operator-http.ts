// The operator's client for the coordinator's HTTP port (revoke, and what else needs the operator token).
// The token is a bearer credential: it goes over HTTPS, or over plain HTTP only to this machine.
import fs from "node:fs";
import net from "node:net";
import { rootCertificates } from "node:tls";
import { ConfigError, TesseraError } from "../errors.ts";
import { splitAddress } from "../wire/address.ts";
import { coordinatorAddress, homeFile, readCa, readConfig, readRequired } from "./home.ts";

/** Whether a URL's host is this machine (loopback), where plain HTTP exposes nothing on the network. */
export function isLoopbackUrl(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (net.isIPv4(host)) return host.startsWith("127.");
  return host === "::1" || host === "::ffff:127.0.0.1";
}

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

/** POST or GET with the operator token; a connection failure on one base moves on to the next. */
export async function operatorFetch(explicitUrl: string | undefined, path: string, init: RequestInit = {}): Promise<Response> {
  const token = readRequired(homeFile("operator-token"), "no operator token on this machine: run `tessera token HEX` first").trim();
  const bases = operatorBases(explicitUrl);
  let last: unknown;
  for (const base of bases) {
    // An HTTPS endpoint may use a certificate from the deployment's CA or from a public one: trust both.
    const tls = base.startsWith("https:") && fs.existsSync(homeFile("ca.crt")) ? { tls: { ca: [...rootCertificates, readCa()] } } : {};
    try {
      return await fetch(`${base}${path}`, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` }, ...tls });
    } catch (err) {
      last = err;
    }
  }
  const tried = bases.join(" and ");
  throw new TesseraError("connect", `cannot reach the coordinator's HTTP port at ${tried}: ${(last as Error).message}${explicitUrl ? "" : "; give the address with --url https://HOST:PORT"}`);
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
