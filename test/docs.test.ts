// The docs stay true: every in-page link of README.md, SECURITY.md and DEPLOYING.md names a section that
// exists, and every flag a documented `tessera ...` command line uses is a flag of that command.
import { expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import type { ArgsDef, CommandDef } from "citty";

const ROOT = path.join(import.meta.dir, "..");
const DOCS = ["README.md", "SECURITY.md", "deploy/DEPLOYING.md"];

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");
}

test("every in-page link names a section of the same document", () => {
  for (const doc of DOCS) {
    const text = fs.readFileSync(path.join(ROOT, doc), "utf8");
    const anchors = new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1]!)));
    for (const m of text.matchAll(/\]\(#([^)]+)\)/g))
      expect(anchors.has(m[1]!), `${doc}: link to #${m[1]} has no section`).toBe(true);
  }
});

type Loaded = CommandDef & { args?: ArgsDef; subCommands?: Record<string, CommandDef | (() => Promise<CommandDef>)> };

async function resolve(def: unknown): Promise<Loaded> {
  return (typeof def === "function" ? await (def as () => Promise<CommandDef>)() : def) as Loaded;
}

/** The flags a command accepts: its args (and --no-X for booleans), plus --help. */
function flagsOf(cmd: Loaded): Set<string> {
  const out = new Set(["help", "h"]);
  for (const [name, a] of Object.entries(cmd.args ?? {})) {
    if ((a as { type?: string }).type === "positional") continue;
    out.add(name);
    for (const alias of [(a as { alias?: string | string[] }).alias ?? []].flat()) out.add(alias);
    if ((a as { type?: string }).type === "boolean") out.add(`no-${name}`);
  }
  return out;
}

/** `tessera ...` command lines in code blocks and inline code, cut at `--`, pipes, redirects and comments. */
function commandLines(text: string): string[] {
  const lines: string[] = [];
  for (const block of text.matchAll(/```[a-z]*\n([\s\S]*?)```/g)) lines.push(...block[1]!.split("\n"));
  for (const m of text.matchAll(/`([^`\n]*tessera [^`\n]*)`/g)) lines.push(m[1]!);
  const out: string[] = [];
  for (const line of lines) {
    for (const m of line.matchAll(/(?:^|[\s$('"=])tessera ((?:[^|&;#>'")]|'[^']*'|"[^"]*")*)/g))
      out.push(m[1]!.split(/\s--(?=\s|$)/)[0]!);
  }
  return out;
}

test("every flag of a documented tessera command line exists", async () => {
  const root = (await import("../src/commands/summaries.ts")).SUMMARIES;
  const checked: string[] = [];
  for (const doc of DOCS) {
    const text = fs.readFileSync(path.join(ROOT, doc), "utf8");
    for (const line of commandLines(text)) {
      const words = line.trim().split(/\s+/);
      const sub = words[0]!;
      if (!(sub in root)) continue;
      let cmd = await resolve((await import(`../src/commands/${sub}.ts`)).default);
      let i = 1;
      while (cmd.subCommands && words[i] && words[i]! in cmd.subCommands)
        cmd = await resolve(cmd.subCommands[words[i++]!]);
      const known = flagsOf(cmd);
      for (const w of words.slice(i)) {
        const m = /^--?([a-z][a-z0-9-]*)/.exec(w);
        if (!m || w.startsWith("---")) continue;
        expect(
          known.has(m[1]!),
          `${doc}: "tessera ${line.trim()}" uses --${m[1]}, which \`tessera ${sub}\` does not have`,
        ).toBe(true);
        checked.push(`${sub} --${m[1]}`);
      }
    }
  }
  // The check must have something to check: the docs use some 30 distinct flags.
  expect(new Set(checked).size, [...new Set(checked)].join(" ")).toBeGreaterThan(25);
});
