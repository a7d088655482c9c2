// A credential for `token` and `link --token`: from a file (--token-file), piped stdin, or typed without echo.
// On the command line it is visible to every local user (`ps`) and kept in shell history, so argv is the
// last resort, taken with a warning.
import fs from "node:fs";
import { ConfigError } from "../errors.ts";
import { logger } from "../log.ts";
import { askHidden, firstLine } from "./code-input.ts";

const log = logger("cli");

/**
 * argv: the value given on the command line ("-" means stdin); file: --token-file. Without either, a
 * terminal gets a no-echo prompt and a pipe gives its first line.
 */
export async function readSecret(o: { argv?: string; file?: string; what: string; flag: string }): Promise<string> {
  if (o.file !== undefined && o.argv !== undefined)
    throw new ConfigError(`give the ${o.what} once: either ${o.flag} or --token-file`);
  if (o.file !== undefined) {
    try {
      return fs.readFileSync(o.file, "utf8").trim();
    } catch (err) {
      throw new ConfigError(
        `cannot read --token-file ${o.file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`,
      );
    }
  }
  if (o.argv !== undefined && o.argv !== "-" && o.argv !== "") {
    log.warn(
      `the ${o.what} was given on the command line, where other local users (ps) and your shell history can read it; next time pipe it in, type it at the prompt, or use --token-file`,
    );
    return o.argv.trim();
  }
  if (process.stdin.isTTY && o.argv !== "-") return askHidden(`${o.what} (not echoed): `, `the ${o.what}`, 1024);
  const line = await firstLine();
  if (!line) throw new ConfigError(`no ${o.what}: pipe it in, type it at the prompt, or use --token-file FILE`);
  return line;
}
