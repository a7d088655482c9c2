// Reads a .cpuprofile written by `bench.ts --profile DIR` and prints where the busy time went: self time
// per function and per source file, idle and GC apart. Usage: bun scripts/bench/prof-top.ts FILE [N]
// Bun 1.4.4 weights a sample by the time since the previous one, idle gaps included, so the time
// column overstates whatever ran just before the thread slept (often a native write); the sample
// count column is the steadier share of where JavaScript was when the thread was busy.
import fs from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const [file, nArg] = process.argv.slice(2);
if (!file) throw new Error("usage: prof-top.ts FILE [N]");
const top = Number(nArg ?? 25);
const prof = JSON.parse(fs.readFileSync(file, "utf8")) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
const hits = new Map<number, number>();
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i]!;
  self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
  hits.set(id, (hits.get(id) ?? 0) + 1);
}

const short = (url: string) =>
  url.replace(/^.*\/(src|scripts|node_modules)\//, "$1/").replace(/^file:\/\//, "") || "(native)";
const fnKey = new Map<string, number>();
const fnHits = new Map<string, number>();
let samples = 0;
const fileKey = new Map<string, number>();
let total = 0;
let idle = 0;
let gc = 0;
for (const [id, us] of self) {
  const f = byId.get(id)!.callFrame;
  total += us;
  if (f.functionName === "(idle)") {
    idle += us;
    continue;
  }
  if (f.functionName === "(garbage collector)") gc += us;
  const k = `${f.functionName || "(anonymous)"}  ${short(f.url)}${f.url ? `:${f.lineNumber + 1}` : ""}`;
  fnKey.set(k, (fnKey.get(k) ?? 0) + us);
  fnHits.set(k, (fnHits.get(k) ?? 0) + hits.get(id)!);
  samples += hits.get(id)!;
  fileKey.set(short(f.url), (fileKey.get(short(f.url)) ?? 0) + us);
}
const busy = total - idle;
const ms = (us: number) => (us / 1000).toFixed(0).padStart(7);
const pct = (us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)}%`;
console.log(
  `${file}\nsampled ${ms(total)} ms, idle ${ms(idle)} ms, busy ${ms(busy)} ms (GC ${ms(gc)} ms); shares are of busy time`,
);
console.log("\nself time by function:");
for (const [k, us] of [...fnKey].sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(
    `${ms(us)} ms ${pct(us)}  ${String(fnHits.get(k)).padStart(6)} samples ${((fnHits.get(k)! / samples) * 100).toFixed(1).padStart(5)}%  ${k}`,
  );
console.log("\nself time by file:");
for (const [k, us] of [...fileKey].sort((a, b) => b[1] - a[1]).slice(0, 12))
  console.log(`${ms(us)} ms ${pct(us)}  ${k}`);
