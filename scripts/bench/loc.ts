// Lines of code in the folders issue 29 rewrote (src/guest, src/host, src/data), in the working tree and
// at a git ref (default 6504fdf, the last commit with per-stream connections and the stream pool), read
// with git ls-tree / git show so the ref needs no checkout.
// Usage: bun scripts/bench/loc.ts [REF] [--dirs src/guest,src/host,src/data]
// "code" leaves out blank lines and lines that are only a comment (// ..., /* ..., * ...).
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "./paths.ts";
import { table } from "./stats.ts";

const { values: a, positionals } = parseArgs({
  args: Bun.argv.slice(2),
  allowPositionals: true,
  options: { dirs: { type: "string", default: "src/guest,src/host,src/data" } },
});
const ref = positionals[0] ?? "6504fdf";
const dirs = a.dirs!.split(",");

function git(args: string[]): string {
  const r = Bun.spawnSync(["git", "-C", ROOT, ...args], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

interface Count {
  files: number;
  lines: number;
  code: number;
}

function count(texts: string[]): Count {
  const c: Count = { files: texts.length, lines: 0, code: 0 };
  for (const t of texts) {
    const lines = t.split("\n");
    if (lines.at(-1) === "") lines.pop();
    c.lines += lines.length;
    c.code += lines.filter((l) => {
      const s = l.trim();
      return s !== "" && !s.startsWith("//") && !s.startsWith("/*") && !s.startsWith("*");
    }).length;
  }
  return c;
}

const isSource = (f: string) => f.endsWith(".ts");

function atRef(dir: string): Count {
  const files = git(["ls-tree", "-r", "--name-only", ref, "--", dir]).split("\n").filter(isSource);
  return count(files.map((f) => git(["show", `${ref}:${f}`])));
}

function inTree(dir: string): Count {
  const abs = path.join(ROOT, dir);
  if (!fs.existsSync(abs)) return count([]);
  const files = (fs.readdirSync(abs, { recursive: true }) as string[]).filter(isSource);
  return count(files.map((f) => fs.readFileSync(path.join(abs, f), "utf8")));
}

const head = git(["rev-parse", "--short", "HEAD"]).trim();
const refName = git(["rev-parse", "--short", ref]).trim();
const rows = [
  ["folder", `files ${refName}`, "now", `lines ${refName}`, "now", "change", `code ${refName}`, "now", "change"],
];
const total = { before: count([]), now: count([]) };
const delta = (x: number, y: number) =>
  `${y - x >= 0 ? "+" : ""}${y - x} (${x ? `${Math.round(((y - x) / x) * 100)}%` : "-"})`;
const add = (into: Count, c: Count) => {
  into.files += c.files;
  into.lines += c.lines;
  into.code += c.code;
};
const row = (name: string, b: Count, n: Count) => [
  name,
  String(b.files),
  String(n.files),
  String(b.lines),
  String(n.lines),
  delta(b.lines, n.lines),
  String(b.code),
  String(n.code),
  delta(b.code, n.code),
];
for (const d of dirs) {
  const b = atRef(d);
  const n = inTree(d);
  add(total.before, b);
  add(total.now, n);
  rows.push(row(d, b, n));
}
rows.push(row("all", total.before, total.now));
console.log(`TypeScript lines at ${refName} (${ref}) and in the working tree (HEAD ${head}):`);
console.log(table(rows));
