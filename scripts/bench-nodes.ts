// `bun scripts/bench-nodes.ts`: streams per second and throughput through 1 and through 3 coordinator
// nodes (one PostgreSQL, a private HAProxy, `--pairs` host/guest pairs through it), all on loopback.
// Options: --nodes 1,3  --pairs N  --runs N  --duration MS  --workers N  --json FILE
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { setupTimes, throughput } from "./bench/client.ts";
import { ROOT, startTarget } from "./bench/paths.ts";
import { cluster, postgres, type Cluster } from "./bench/cluster.ts";
import { cpuSeconds, killAll, killOnSignal } from "./bench/procs.ts";
import { fmt, median, table } from "./bench/stats.ts";

const { values: a } = parseArgs({
  options: {
    nodes: { type: "string", default: "1,3" },
    pairs: { type: "string", default: "3" },
    runs: { type: "string", default: "3" },
    duration: { type: "string", default: "3000" },
    workers: { type: "string", default: "12" },
    json: { type: "string", default: path.join(ROOT, "dist/bench-nodes.json") },
  },
});
const int = (s: string, name: string, min: number, max: number) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer from ${min} to ${max}`);
  return n;
};
// Bounded: every count and duration has a ceiling, so a typo cannot make a run that never ends.
const opt = {
  pairs: int(a.pairs!, "pairs", 1, 8),
  runs: int(a.runs!, "runs", 1, 10),
  duration: int(a.duration!, "duration", 200, 30_000),
  workers: int(a.workers!, "workers", 1, 64),
};
const counts = a.nodes!.split(",").map((s) => int(s, "nodes", 1, 5));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-bench-nodes-"));
let current: Cluster | undefined;
let pg: Awaited<ReturnType<typeof postgres>> | undefined;
const cleanup = async () => {
  await current?.stop().catch(() => {});
  await killAll();
  await pg?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
};
killOnSignal(cleanup);
const say = (s: string) => console.error(`bench-nodes: ${s}`);

/** Fresh streams (connect, first echoed byte, close) by `workers` loops spread over the guests, for `ms`. */
async function streamsPerSecond(locals: number[], workers: number, ms: number): Promise<number> {
  let done = 0;
  const t0 = performance.now();
  const end = t0 + ms;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      while (performance.now() < end) {
        await setupTimes(locals[w % locals.length]!, 1);
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}

/** CPU seconds used by the nodes and HAProxy while `f` runs: what the relay side of the deployment costs. */
async function withCpu<T>(c: Cluster, f: () => Promise<T>): Promise<{ value: T; nodeCpu: number; haCpu: number }> {
  const n0 = c.nodes.map((p) => cpuSeconds(p.pid));
  const h0 = cpuSeconds(c.haproxy.pid);
  const value = await f();
  return {
    value,
    nodeCpu: c.nodes.reduce((s, p, i) => s + cpuSeconds(p.pid) - n0[i]!, 0),
    haCpu: cpuSeconds(c.haproxy.pid) - h0,
  };
}

const loadAtStart = os.loadavg();
type Row = {
  nodes: number;
  streamsPerSec: number[];
  mbps: number[];
  nodeCpuPerStreamMs: number[];
  nodeCpuPerGb: number[];
  haCpuPerGb: number[];
};
const rows: Row[] = [];
try {
  say(
    `${os.cpus().length} cores, load average ${loadAtStart.map((l) => l.toFixed(2)).join(" ")}; nodes ${counts.join(",")}, ${opt.pairs} pairs, ${opt.runs} run(s) of ${opt.duration} ms`,
  );
  pg = await postgres();
  const target = await startTarget();
  for (const n of counts) {
    current = await cluster(pg.url, dir, n, opt.pairs, target.port);
    say(`${n} node(s) up behind HAProxy, ${opt.pairs} shares joined through it`);
    // Unmeasured warm-up: fresh processes are still compiling their hot code.
    await streamsPerSecond(current.locals, opt.workers, 1000);
    await Promise.all(current.locals.map((l) => throughput(l, 1, 300, 100)));
    const row: Row = {
      nodes: n,
      streamsPerSec: [],
      mbps: [],
      nodeCpuPerStreamMs: [],
      nodeCpuPerGb: [],
      haCpuPerGb: [],
    };
    for (let r = 0; r < opt.runs; r++) {
      await Bun.sleep(300);
      const s = await withCpu(current, () => streamsPerSecond(current!.locals, opt.workers, opt.duration));
      row.streamsPerSec.push(s.value);
      row.nodeCpuPerStreamMs.push((s.nodeCpu * 1000) / ((s.value * opt.duration) / 1000));
      await Bun.sleep(300);
      // One bulk stream per pair at once: their sum is the deployment's throughput.
      const t = await withCpu(current, async () =>
        (await Promise.all(current!.locals.map((l) => throughput(l, 1, opt.duration)))).reduce((x, y) => x + y, 0),
      );
      row.mbps.push(t.value);
      const gb = (t.value * 1e6 * (opt.duration + 300)) / 1000 / 1e9;
      row.nodeCpuPerGb.push(t.nodeCpu / gb);
      row.haCpuPerGb.push(t.haCpu / gb);
      say(`${n} node(s), run ${r + 1}/${opt.runs}: ${fmt(s.value, 0)} streams/s, ${fmt(t.value, 0)} MB/s`);
    }
    rows.push(row);
    await current.stop();
    current = undefined;
  }
  console.log(
    `\nmedian of ${opt.runs} run(s); ${opt.pairs} host/guest pairs through a private HAProxy; MB = 10^6 bytes`,
  );
  console.log(
    `load average at start ${loadAtStart.map((l) => l.toFixed(2)).join(" ")}, at end ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} (${os.cpus().length} cores shared by every process here)\n`,
  );
  console.log(
    table([
      ["nodes", "streams/s", "throughput (MB/s)", "node CPU ms/stream", "node CPU s/GB", "haproxy CPU s/GB"],
      ...rows.map((r) => [
        String(r.nodes),
        fmt(median(r.streamsPerSec), 0),
        fmt(median(r.mbps), 0),
        fmt(median(r.nodeCpuPerStreamMs)),
        fmt(median(r.nodeCpuPerGb)),
        fmt(median(r.haCpuPerGb)),
      ]),
    ]),
  );
  const json = {
    when: new Date().toISOString(),
    machine: {
      cores: os.cpus().length,
      cpu: os.cpus()[0]?.model,
      loadavgAtStart: loadAtStart,
      loadavgAtEnd: os.loadavg(),
      bun: Bun.version,
    },
    options: { ...opt, nodes: counts },
    rows,
  };
  fs.mkdirSync(path.dirname(a.json!), { recursive: true });
  fs.writeFileSync(a.json!, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nwrote ${a.json}`);
} catch (e) {
  // What each process said is what tells a failed stream's story (the benchmark deletes their files).
  for (const p of current?.all() ?? [])
    console.error(`--- ${p.name} (pid ${p.pid}), last lines:\n${p.out.split("\n").slice(-15).join("\n")}`);
  throw e;
} finally {
  await cleanup();
}
