// Coverage by room: reads the lcov file `bun test --coverage --coverage-reporter=lcov` writes and prints one
// row per folder of src/ (lines and functions covered by the in-process tests), so a room far below the rest
// stands out. No threshold: the table is for people to read. End-to-end tests run the compiled binary in
// other processes, which Bun does not measure, so this is what the in-process tests reach.
//   bun scripts/coverage-rooms.ts [coverage/lcov.info]
import fs from "node:fs";
import path from "node:path";

interface Room {
  lines: number;
  linesHit: number;
  fns: number;
  fnsHit: number;
  loaded: number;
  files: number;
}

/** The room a source file lives in: its folder under src/, or "src/" for the files at its top. */
function roomOf(file: string): string | undefined {
  const parts = file.split("/");
  if (parts[0] !== "src") return undefined;
  return parts.length > 2 ? `${parts[1]}/` : "src/";
}

/** Every measured source file's totals, from lcov's SF/LF/LH/FNF/FNH records. */
export function parseLcov(text: string): Map<string, { lf: number; lh: number; fnf: number; fnh: number }> {
  const out = new Map<string, { lf: number; lh: number; fnf: number; fnh: number }>();
  let file: string | undefined;
  let rec = { lf: 0, lh: 0, fnf: 0, fnh: 0 };
  for (const line of text.split("\n")) {
    const [key, value = ""] = line.split(/:(.*)/s, 2) as [string, string?];
    if (key === "SF") {
      file = value.replace(/\\/g, "/");
      rec = { lf: 0, lh: 0, fnf: 0, fnh: 0 };
    } else if (key === "LF") rec.lf = Number(value);
    else if (key === "LH") rec.lh = Number(value);
    else if (key === "FNF") rec.fnf = Number(value);
    else if (key === "FNH") rec.fnh = Number(value);
    else if (key === "end_of_record" && file) {
      out.set(file, rec);
      file = undefined;
    }
  }
  return out;
}

function sourceFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (/\.(ts|js)$/.test(e.name) && !e.name.endsWith(".d.ts")) out.push(rel);
    }
  };
  walk("src");
  return out;
}

/** Rows per room, with the files the tests never loaded counted (lcov lists only loaded files). */
export function rooms(measured: ReturnType<typeof parseLcov>, files: string[]): Map<string, Room> {
  const out = new Map<string, Room>();
  const room = (name: string) => {
    let r = out.get(name);
    if (!r) out.set(name, (r = { lines: 0, linesHit: 0, fns: 0, fnsHit: 0, loaded: 0, files: 0 }));
    return r;
  };
  for (const f of files) {
    const name = roomOf(f);
    if (name) room(name).files++;
  }
  for (const [f, m] of measured) {
    const name = roomOf(f);
    if (!name) continue;
    const r = room(name);
    r.lines += m.lf;
    r.linesHit += m.lh;
    r.fns += m.fnf;
    r.fnsHit += m.fnh;
    r.loaded++;
  }
  return out;
}

const pct = (hit: number, all: number) => (all ? `${((100 * hit) / all).toFixed(1)}%` : "-");

export function table(rs: Map<string, Room>): string {
  const total: Room = { lines: 0, linesHit: 0, fns: 0, fnsHit: 0, loaded: 0, files: 0 };
  const rows = [...rs.entries()].sort(([a], [b]) => a.localeCompare(b));
  for (const [, r] of rows) for (const k of Object.keys(total) as (keyof Room)[]) total[k] += r[k];
  const line = (name: string, r: Room) =>
    `| ${name.padEnd(16)} | ${pct(r.linesHit, r.lines).padStart(6)} | ${pct(r.fnsHit, r.fns).padStart(9)} | ${`${r.loaded}/${r.files}`.padStart(12)} |`;
  return [
    `| ${"room".padEnd(16)} |  lines | functions | files loaded |`,
    `| ${"-".repeat(16)} | -----: | --------: | -----------: |`,
    ...rows.map(([name, r]) => line(name === "src/" ? "src/ (top files)" : `src/${name}`, r)),
    line("all of src/", total),
  ].join("\n");
}

if (import.meta.main) {
  const file = process.argv[2] ?? "coverage/lcov.info";
  if (!fs.existsSync(file)) {
    console.error(`coverage-rooms: no ${file}; run bun test --coverage --coverage-reporter=lcov first`);
    process.exit(1);
  }
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
  console.log("coverage by room (in-process tests; % of the lines and functions of the files they loaded):");
  console.log(table(rooms(parseLcov(fs.readFileSync(file, "utf8")), sourceFiles(root))));
}
