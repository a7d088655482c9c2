// TESSERA_HOME: this machine's keys, certificates and linked coordinator, one file each.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as v from "valibot";
import { issueText } from "../validate.ts";
import { ConfigError } from "../errors.ts";

const Config = v.object({ coordinator: v.optional(v.string()), http: v.optional(v.string()) });
export type Config = v.InferOutput<typeof Config>;

export function homeDir(): string {
  return resolveHome({ platform: process.platform, env: process.env, homedir: os.homedir() });
}

/**
 * Where a machine keeps its Tessera files, the platform's way: TESSERA_HOME always wins, then
 * %APPDATA%\tessera on Windows, ~/Library/Application Support/tessera on macOS, and
 * $XDG_CONFIG_HOME/tessera (else ~/.config/tessera) elsewhere. Pure, so every platform is testable anywhere.
 */
export function resolveHome(o: { platform: string; env: Record<string, string | undefined>; homedir: string }): string {
  const p = o.platform === "win32" ? path.win32 : path.posix;
  if (o.env.TESSERA_HOME) return p.resolve(o.env.TESSERA_HOME);
  if (o.platform === "win32") {
    // APPDATA is set for every interactive Windows user; a service account may lack it.
    const appData =
      o.env.APPDATA && p.isAbsolute(o.env.APPDATA) ? o.env.APPDATA : p.join(o.homedir, "AppData", "Roaming");
    return p.join(appData, "tessera");
  }
  if (o.platform === "darwin") return p.join(o.homedir, "Library", "Application Support", "tessera");
  // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
  const xdg =
    o.env.XDG_CONFIG_HOME && p.isAbsolute(o.env.XDG_CONFIG_HOME) ? o.env.XDG_CONFIG_HOME : p.join(o.homedir, ".config");
  return p.join(xdg, "tessera");
}

export const homeFile = (
  name:
    | "config.json"
    | "ca.crt"
    | "host.key"
    | "host.crt"
    | "operator-token"
    | "identity.key"
    | "known_guests.json"
    | "approvers.json"
    | "approver.key"
    | "approver.json"
    | `used-receipts-${string}.jsonl`,
) => path.join(homeDir(), name);

export function readConfig(): Config {
  const file = homeFile("config.json");
  if (!fs.existsSync(file)) return {};
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new ConfigError(`${file} is not valid JSON; fix or delete it and run \`tessera link\` again`, { cause: err });
  }
  const r = v.safeParse(Config, json);
  if (!r.success) throw new ConfigError(`${file}${issueText(r.issues)}`);
  return r.output;
}

export function writeConfig(c: Config): void {
  writePrivate(homeFile("config.json"), `${JSON.stringify(c, null, 2)}\n`);
}

export function coordinatorAddress(): string {
  const addr = process.env.TESSERA_COORDINATOR || readConfig().coordinator;
  if (!addr)
    throw new ConfigError("no coordinator linked: run `tessera link HOST:PORT ...` or set TESSERA_COORDINATOR");
  return addr;
}

export function readCa(): string {
  return readRequired(
    homeFile("ca.crt"),
    "this machine does not trust a coordinator CA yet: run `tessera link HOST:PORT --ca-file ca.crt` (or --ca-pin sha256:...)",
  );
}

export function readHostIdentity(): { keyPem: string; certPem: string } {
  const hint = "this machine is not enrolled as a host: run `tessera link HOST:PORT --token TOKEN` first";
  return { keyPem: readRequired(homeFile("host.key"), hint), certPem: readRequired(homeFile("host.crt"), hint) };
}

export function readRequired(file: string, hint: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") throw new ConfigError(`${hint} (${file} not found)`);
    const home = placeProblem(file, err, "read");
    if (home) throw home;
    throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Secrets and keys: 0600 from the first byte (never chmod after writing). */
export function writePrivate(file: string, data: string, opts: { force?: boolean } = { force: true }): void {
  writing(file, () => {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const fd = fs.openSync(file, opts.force ? "w" : "wx", 0o600);
    try {
      fs.fchmodSync(fd, 0o600);
      fs.writeFileSync(fd, data);
    } finally {
      fs.closeSync(fd);
    }
  });
}

export function writePublic(file: string, data: string): void {
  writing(file, () => {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, data, { mode: 0o644 });
  });
}

/** Runs a write; a directory that cannot hold the file is named, with TESSERA_HOME when it is the one at fault. */
function writing(file: string, write: () => void): void {
  try {
    write();
  } catch (err) {
    throw placeProblem(file, err, "write") ?? err;
  }
}

/** A file's directory that cannot be used (not ours, read-only, a file in the way), named with the fix. */
function placeProblem(file: string, err: unknown, verb: "read" | "write"): ConfigError | undefined {
  const code = (err as { code?: string }).code ?? "";
  const home = homeDir();
  const inHome = path.resolve(file).startsWith(home + path.sep);
  const where = inHome ? `TESSERA_HOME (${home})` : path.dirname(path.resolve(file));
  const fix = inHome
    ? "set TESSERA_HOME to a directory of your own (e.g. TESSERA_HOME=$HOME/.tessera), or fix that one"
    : "choose another directory, or fix that one";
  if (code === "EACCES" || code === "EPERM" || code === "EROFS")
    return new ConfigError(
      `cannot ${verb} ${file}: ${where} is not ${verb === "read" ? "readable" : "writable"} by this user (${code}); ${fix}`,
      {
        cause: err,
      },
    );
  // EEXIST from open is an exclusive create that lost (the caller's to handle); from mkdir, a file in the way.
  if ((code === "EEXIST" && (err as { syscall?: string }).syscall === "mkdir") || code === "ENOTDIR")
    return new ConfigError(
      `cannot ${verb} ${file}: ${where}, or a folder on its path, is a file, not a directory (${code}); ${fix}`,
      { cause: err },
    );
  return undefined;
}
