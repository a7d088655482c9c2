// Addresses as users and frames write them: HOST[:PORT] for the coordinator and local ports,
// HOST:PORT targets (IPv6 in brackets). Every role parses them the same way, here.
import net from "node:net";
import * as v from "valibot";
import { TesseraError } from "../errors.ts";
import { target } from "./protocol.ts";

/** Splits HOST:PORT, rejecting ports out of range. Returns host without IPv6 brackets. */
export function parseTarget(s: string): { host: string; port: number } {
  const r = v.safeParse(target, s);
  const m = r.success ? /^\[?(.+?)\]?:(\d+)$/.exec(s) : null;
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535)
    throw new TesseraError("bad_address", `"${s}" is not HOST:PORT with a port from 1 to 65535`);
  return { host: m[1]!, port };
}

export function formatTarget(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Parses HOST[:PORT] / [V6][:PORT]; port 0 (any free port) only when listening. */
export function splitAddress(address: string, defaultPort = 8443, listening = false): { host: string; port: number } {
  const a = address.trim();
  let host: string | undefined = a;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(a);
  if (bracketed) [, host, portText] = bracketed;
  else if (a.split(":").length === 2) [host, portText] = a.split(":");
  const port = portText === undefined ? defaultPort : /^\d{1,5}$/.test(portText) ? Number(portText) : -1;
  if (!host || !(port >= (listening ? 0 : 1) && port <= 65535))
    throw new TesseraError("bad_address", `"${address}" is not HOST[:PORT]`);
  return { host, port };
}

/**
 * Whether a URL's host is this machine (loopback), where plain HTTP exposes nothing on the network: the
 * one rule for where the operator token may travel without TLS (`tessera admin`, the console).
 */
export function isLoopbackUrl(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (net.isIPv4(host)) return host.startsWith("127.");
  return host === "::1" || host === "::ffff:127.0.0.1";
}
