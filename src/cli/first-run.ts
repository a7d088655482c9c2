// `tessera coordinator --init`: an operator's first run in one command. Creates the PKI when the certs
// directory has none (never over an existing one) and, once listening, prints the two lines to hand out.
import os from "node:os";
import path from "node:path";
import { ConfigError } from "../errors.ts";
import { formatTarget } from "../wire/address.ts";
import { hasPki, initPki } from "./pki-init.ts";

export interface FirstRun {
  dir: string;
  names: string[];
  fingerprint: string;
  enrollToken: string;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/** The certificate's default names: this machine's hostname (when it is a usable DNS name) and localhost. */
export function defaultNames(): string[] {
  const host = os.hostname().toLowerCase();
  const usable = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(host);
  return usable && host !== "localhost" ? [host, "localhost"] : ["localhost"];
}

/**
 * Creates the PKI in dir when it has none and the operator asked (--init) or left --certs at its default;
 * an explicit --certs without a CA is more likely a typo than a wish for a new CA, so that is refused.
 */
export async function prepareFirstRun(o: {
  dir: string;
  init: boolean;
  certsGiven: boolean;
  names?: string;
  tokenTtlMs: number;
  say: (line: string) => void;
}): Promise<FirstRun | undefined> {
  if (hasPki(o.dir)) {
    if (o.init) o.say(`${o.dir} already holds a CA: keeping it (--init never overwrites one)`);
    return undefined;
  }
  if (!o.init && o.certsGiven)
    throw new ConfigError(
      `${o.dir} is missing ca.crt: add --init to create a new CA there, or run \`tessera ca --coordinator-name NAME --dir ${o.dir}\``,
    );
  const names = o.names ? o.names.split(",").map((n) => n.trim()) : defaultNames();
  const made = await initPki({ dir: o.dir, names, tokenTtlMs: o.tokenTtlMs, now: new Date() });
  return { dir: o.dir, names: names.filter(Boolean), ...made };
}

/** Which of the certificate's names to print for a listener on host:port. */
export function handOutAddress(names: string[], host: string, port: number): string {
  const name = (LOOPBACK.has(host) && names.find((n) => LOOPBACK.has(n))) || names.find((n) => n === host) || names[0]!;
  return formatTarget(name, port);
}

/**
 * The lines an operator hands out: the host's enrolment and the guest's trust line. The single-use token
 * itself is shown only on a terminal; into a file or a log the host's line names the token's file instead.
 */
export function handOutLines(r: FirstRun, bound: { host: string; port: number }, tty: boolean): string {
  const address = handOutAddress(r.names, bound.host, bound.port);
  const tokenFile = path.join(r.dir, "enroll-token");
  return [
    `created a CA in ${r.dir}${path.sep} (sha256:${r.fingerprint}) and a certificate for ${r.names.join(", ")}`,
    "hand these out (the token works once, within 24h; `tessera admin enroll-token` makes another):",
    tty
      ? `  host:  tessera link ${address} --token ${r.enrollToken}`
      : `  host:  tessera link ${address} --token-file ${tokenFile}`,
    `  guest: tessera link ${address} --ca-pin sha256:${r.fingerprint}`,
    ...(tty ? [] : [`(the token is not printed into a file or log: copy ${tokenFile} to the host's machine)`]),
    "",
  ].join("\n");
}
