// What a guest's request is checked for before anything is dialled: the reason, the command to run, the
// local address's reach.
import fs from "node:fs";
import { ConfigError } from "../errors.ts";
import { MAX_REASON_CHARS, TEXT_CONTROL } from "../wire/protocol.ts";

/** The reason in the guest's own terms, before anything is dialled: its length cap and the characters refused. */
export function checkReason(reason: string): void {
  if (reason.length > MAX_REASON_CHARS)
    throw new ConfigError(
      `--reason is at most ${MAX_REASON_CHARS} characters (this one has ${reason.length}); say it shorter`,
    );
  const bad = TEXT_CONTROL.exec(reason);
  if (bad) {
    const cp = bad[0].codePointAt(0)!;
    const what = cp === 0x1b ? "an escape character (ESC)" : `control character U+${cp.toString(16).padStart(4, "0")}`;
    throw new ConfigError(
      `--reason contains ${what} at position ${bad.index + 1}: write it as plain text (newlines and tabs are fine)`,
    );
  }
}

/** Whether argv0 names something runnable: a path to an executable file, or a name found on PATH. */
export function findCommand(argv0: string): boolean {
  if (argv0.includes("/")) {
    try {
      fs.accessSync(argv0, fs.constants.X_OK);
      return fs.statSync(argv0).isFile();
    } catch {
      return false;
    }
  }
  return Bun.which(argv0) !== null;
}

/** A local address only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}
