// What citty leaves to us: a mistyped flag is an error naming the closest real one (never silently
// ignored), a mistyped command suggests the right one, and a repeatable flag keeps every value.
import type { ArgsDef } from "citty";
import { ConfigError } from "../errors.ts";

/** Edit distance, for "did you mean": small inputs only (flag and command names). */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** The closest candidate within a couple of edits (or sharing a prefix), if any. */
export function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(word) || word.startsWith(c) ? Math.abs(c.length - word.length) * 0.5 : distance(word, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** The long flags a command accepts (booleans also as --no-X), plus --help. */
export function knownFlags(args: ArgsDef | undefined): Set<string> {
  const out = new Set(["help"]);
  for (const [name, a] of Object.entries(args ?? {})) {
    if (a.type === "positional") continue;
    out.add(name);
    for (const alias of [(a as { alias?: string | string[] }).alias ?? []].flat()) out.add(alias);
    if (a.type === "boolean") out.add(`no-${name}`);
  }
  return out;
}

/**
 * Throws for the first flag (before `--`) the command does not have, suggesting the closest one, and for a
 * value flag given no value (`--reason` last, or followed by another flag), which citty would take as "".
 */
export function checkFlags(args: ArgsDef | undefined, rawArgs: string[], command: string): void {
  const known = knownFlags(args);
  const valued = new Set(
    Object.entries(args ?? {})
      // `optionalValue: true` marks a flag that means something alone (share --record: the default directory).
      .filter(([, a]) => a.type === "string" && !(a as { optionalValue?: boolean }).optionalValue)
      .flatMap(([n, a]) => [n, ...[(a as { alias?: string | string[] }).alias ?? []].flat()]),
  );
  for (let i = 0; i < rawArgs.length; i++) {
    const w = rawArgs[i]!;
    if (w === "--") return;
    const flag = /^--?([^=]+)$/.exec(w)?.[1];
    const next = rawArgs[i + 1];
    if (
      flag &&
      valued.has(flag) &&
      (next === undefined ||
        (next.startsWith("--") && next !== "--" ? known.has(next.slice(2).split("=")[0]!) : next === "--"))
    )
      throw new ConfigError(`${w} needs a value (see \`tessera ${command} --help\`)`);
  }
  for (const w of rawArgs) {
    if (w === "--") return;
    const m = /^--?([^=]+)/.exec(w);
    if (!m || w === "-" || /^-\d/.test(w)) continue;
    const name = m[1]!;
    if (known.has(name) || (w.length === 2 && name === "h")) continue;
    const near = closest(
      name,
      [...known].filter((k) => k !== "help"),
    );
    throw new ConfigError(
      `unknown option ${w.split("=")[0]} for \`tessera ${command}\`${near ? `; did you mean --${near}?` : ""} (see \`tessera ${command} --help\`)`,
    );
  }
}

/** Every value of a repeatable string flag (`--allow A --allow B`, `--allow=A`), in order. */
export function repeatedValues(rawArgs: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const w = rawArgs[i]!;
    if (w === "--") break;
    if (w === `--${name}` && i + 1 < rawArgs.length) out.push(rawArgs[++i]!);
    else if (w.startsWith(`--${name}=`)) out.push(w.slice(name.length + 3));
  }
  return out;
}
