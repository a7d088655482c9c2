// `bun run bench`: measures direct TCP, ssh -L, tessera through the coordinator (relay) and tessera's
// direct path on loopback in one run, the same way with the same client, and prints each tessera
// figure as a ratio to ssh -L and to direct from the same run.
// Options: --runs N  --duration MS  --setup N  --rtt N  --idle N  --paths direct,ssh,tessera,tessera-direct  --json FILE  --quick
//          --conns N (request/response connections)  --delay MS (delayed link, each way)  --delay-setup N
//          --only bulk,setup,rtt,rr,redis,delay,idle,help (which workloads; all by default)
//          --before BIN: another tessera binary (an older build) measured in the same run as two more
//          paths, `before` (relay) and `before-direct`, each also printed as this build's ratio to it
//          --profile DIR (CPU profiles of coordinator, share and join, written when they exit)
//          --redis-clients 50,1  --redis-requests N (per client count of 50; scaled down for fewer clients)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { requestResponse, roundTrips, setupTimes, throughput } from "./bench/client.ts";
import { cpuMeter, printCpu, type CpuCost } from "./bench/cpu.ts";
import { measureDelayed, printDelayed, type DelayedResult } from "./bench/delayed.ts";
import { measureIdle, printIdle, type IdleResult } from "./bench/idle.ts";
import { haveRedis, measureRedis, printRedis, type RedisResult } from "./bench/redis.ts";
import {
  BEFORE_OF,
  direct,
  helpTimes,
  ROOT,
  SHORT,
  ssh,
  startTarget,
  TESSERA_PATHS,
  tesseraPaths,
  type Path,
} from "./bench/paths.ts";
import { killAll, killOnSignal, peakRssMb, processName } from "./bench/procs.ts";
import { fmt, median, percentile, table } from "./bench/stats.ts";

const { values: a } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    duration: { type: "string", default: "2000" },
    setup: { type: "string", default: "200" },
    rtt: { type: "string", default: "2000" },
    idle: { type: "string", default: "1000" },
    help: { type: "string", default: "20" },
    paths: { type: "string", default: "direct,ssh,tessera,tessera-direct" },
    json: { type: "string", default: path.join(ROOT, "dist/bench.json") },
    quick: { type: "boolean", default: false },
    profile: { type: "string" },
    conns: { type: "string", default: "50" },
    delay: { type: "string", default: "10" },
    "delay-setup": { type: "string", default: "30" },
    only: { type: "string", default: "bulk,setup,rtt,rr,redis,delay,idle,help" },
    "redis-clients": { type: "string", default: "50,1" },
    "redis-requests": { type: "string", default: "100000" },
    before: { type: "string", description: "another tessera binary, measured as the paths before and before-direct" },
  },
});
const num = (s: string, name: string, min: number) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}`);
  return n;
};
const opt = a.quick
  ? { runs: 1, duration: 1000, setup: 200, rtt: 2000, idle: num(a.idle!, "idle", 0), help: 5 }
  : {
      runs: num(a.runs!, "runs", 1),
      duration: num(a.duration!, "duration", 200),
      setup: num(a.setup!, "setup", 1),
      rtt: num(a.rtt!, "rtt", 1),
      idle: num(a.idle!, "idle", 0),
      help: num(a.help!, "help", 1),
    };
const wanted = new Set(a.paths!.split(","));
const only = new Set(a.only!.split(","));
const conns = num(a.conns!, "conns", 1);
const delayMs = num(a.delay!, "delay", 1);
const delaySetups = num(a["delay-setup"]!, "delay-setup", 1);
const redisClients = a["redis-clients"]!.split(",").map((c) => num(c, "redis-clients", 1));
const redisRequests = a.quick ? 20_000 : num(a["redis-requests"]!, "redis-requests", 100);
// One client makes far fewer requests a second than fifty: a fifth as many keeps each measurement near a second.
const redisRequestsFor = (clients: number) => (clients >= 10 ? redisRequests : Math.ceil(redisRequests / 5));
const before = a.before;
if (before !== undefined) {
  if (!fs.existsSync(before)) throw new Error(`--before ${before}: no such file`);
  wanted.add("before").add("before-direct");
}

type Metric = "tp1" | "tp8" | "setupP50" | "setupP99" | "setupGapP50" | "rttP50" | "rttP99" | "rr1" | "rr16";
/** Connections opened one at a time with this pause between them (a person's psql, a page's next request). */
const SETUP_GAP_MS = 10;
const METRICS: { key: Metric; label: string; unit: string; higherIsBetter: boolean }[] = [
  { key: "tp1", label: "throughput, 1 stream", unit: "MB/s", higherIsBetter: true },
  { key: "tp8", label: "throughput, 8 streams", unit: "MB/s", higherIsBetter: true },
  { key: "setupP50", label: "stream setup p50", unit: "ms", higherIsBetter: false },
  { key: "setupP99", label: "stream setup p99", unit: "ms", higherIsBetter: false },
  { key: "setupGapP50", label: `stream setup p50, ${SETUP_GAP_MS} ms apart`, unit: "ms", higherIsBetter: false },
  { key: "rttP50", label: "64 B round trip p50", unit: "ms", higherIsBetter: false },
  { key: "rttP99", label: "64 B round trip p99", unit: "ms", higherIsBetter: false },
  { key: "rr1", label: `req/resp 64 B-1 KiB, ${conns} conns`, unit: "req/s", higherIsBetter: true },
  { key: "rr16", label: `req/resp, ${conns} conns, 16 pipelined`, unit: "req/s", higherIsBetter: true },
];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-bench-"));
const paths: Path[] = [];
const cleanup = async () => {
  for (const p of paths) await p.stop().catch(() => {});
  await killAll();
  fs.rmSync(dir, { recursive: true, force: true });
};
killOnSignal(cleanup);
const say = (s: string) => console.error(`bench: ${s}`);

const loadAtStart = os.loadavg();
try {
  say(
    `${os.cpus().length} cores, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}; ${opt.runs} run(s)`,
  );
  const target = await startTarget();
  if (wanted.has("direct")) paths.push(await direct(target));
  if (wanted.has("ssh")) {
    if (fs.existsSync("/usr/sbin/sshd")) paths.push(await ssh(target.port, dir));
    else say("no /usr/sbin/sshd (apt-get install openssh-server): ssh -L skipped");
  }
  paths.push(...(await tesseraPaths(target.port, dir, wanted, before, { profileDir: a.profile })));
  say(`paths up: ${paths.map((p) => `${p.name} -> 127.0.0.1:${p.port}`).join(", ")}`);

  // Warm-up, the same for every path, not measured: fresh processes are still compiling their hot code.
  for (const p of paths) {
    await setupTimes(p.port, 50);
    await roundTrips(p.port, 200);
    await throughput(p.port, 1, 300, 100);
    if (only.has("rr")) await requestResponse(p.port, conns, 1, 300, 100);
  }

  // results[path][metric][run]
  const results: Record<string, Record<Metric, number[]>> = {};
  const cpu: CpuCost = {};
  for (const p of paths)
    results[p.name] = {
      tp1: [],
      tp8: [],
      setupP50: [],
      setupP99: [],
      setupGapP50: [],
      rttP50: [],
      rttP99: [],
      rr1: [],
      rr16: [],
    };
  for (let r = 0; r < opt.runs; r++) {
    // Each metric is taken on every path back to back, so the ratios compare like with like in time.
    const order = paths.map((_, i) => paths[(i + r) % paths.length]!);
    // A short pause before each measurement lets the previous one's teardown finish off the clock.
    const settle = () => Bun.sleep(300);
    if (only.has("bulk"))
      for (const p of order) {
        await settle();
        results[p.name]!.tp1.push(await throughput(p.port, 1, opt.duration));
      }
    if (only.has("bulk"))
      for (const p of order) {
        await settle();
        results[p.name]!.tp8.push(await throughput(p.port, 8, opt.duration));
      }
    if (only.has("rr"))
      for (const p of order) {
        await settle();
        results[p.name]!.rr1.push(
          await requestResponse(p.port, conns, 1, opt.duration, 300, () => cpuMeter(cpu, "rr1", p)),
        );
      }
    if (only.has("rr"))
      for (const p of order) {
        await settle();
        results[p.name]!.rr16.push(
          await requestResponse(p.port, conns, 16, opt.duration, 300, () => cpuMeter(cpu, "rr16", p)),
        );
      }
    if (only.has("setup"))
      for (const p of order) {
        await settle();
        const meter = cpuMeter(cpu, "setup", p);
        const t = await setupTimes(p.port, opt.setup);
        meter(opt.setup);
        results[p.name]!.setupP50.push(percentile(t, 50));
        results[p.name]!.setupP99.push(percentile(t, 99));
      }
    // Back to back, setup is bound by each stream's CPU; spaced out, it shows what one new connection waits.
    if (only.has("setup"))
      for (const p of order) {
        await settle();
        results[p.name]!.setupGapP50.push(
          percentile(await setupTimes(p.port, Math.max(20, opt.setup / 2), SETUP_GAP_MS), 50),
        );
      }
    if (only.has("rtt"))
      for (const p of order) {
        await settle();
        const t = await roundTrips(p.port, opt.rtt);
        results[p.name]!.rttP50.push(percentile(t, 50));
        results[p.name]!.rttP99.push(percentile(t, 99));
      }
    say(
      `run ${r + 1}/${opt.runs}: ` +
        paths
          .map(
            (p) =>
              `${p.name} ${fmt(results[p.name]!.tp1.at(-1))}/${fmt(results[p.name]!.tp8.at(-1))} MB/s, setup ${fmt(results[p.name]!.setupP50.at(-1))} ms, rtt ${fmt(results[p.name]!.rttP50.at(-1), 3)} ms, req/resp ${fmt(results[p.name]!.rr1.at(-1))}/${fmt(results[p.name]!.rr16.at(-1))} req/s`,
          )
          .join("; "),
    );
  }

  const rss = paths.flatMap((p) =>
    p
      .processes()
      .map((q) => ({ path: p.name, role: q.role, pid: q.pid, cmd: processName(q.pid), peakRssMb: peakRssMb(q.pid) })),
  );

  // Each tessera path in turn (one path's streams closing is let finish before the next one's open).
  const idle: Record<string, IdleResult> = {};
  if (opt.idle > 0 && only.has("idle"))
    for (const p of paths.filter((q) => (TESSERA_PATHS as readonly string[]).includes(q.name))) {
      await Bun.sleep(1000);
      const r = (idle[p.name] = await measureIdle(p, opt.idle));
      say(
        `${p.name}, ${r.streams} idle streams: coordinator ${fmt(r.coordinatorRssMb)} MB RSS, ${r.coordinatorSocketsBefore} -> ${r.coordinatorSockets} sockets, ${fmt(r.coordinatorCpuPercentIdle)}% CPU while idle`,
      );
    }

  // The redis paths are their own processes (the share forwards to redis-server), set up after the others.
  let redis: RedisResult | undefined;
  if (only.has("redis")) {
    if (haveRedis()) {
      say(`redis-benchmark: ${redisClients.join(" and ")} clients`);
      redis = await measureRedis(dir, wanted, before, opt.runs, redisClients, redisRequestsFor, say);
    } else say("no redis-server/redis-benchmark (apt-get install redis-server redis-tools): redis skipped");
  }

  // The delayed-link paths are set up after the loopback ones are measured, so they never overlap.
  let delayed: DelayedResult | undefined;
  if (only.has("delay")) {
    say(`delayed link: ${delayMs} ms each way on every hop`);
    delayed = await measureDelayed(target, dir, wanted, before, delayMs, delaySetups);
  }

  const help = only.has("help") ? helpTimes(opt.help) : [];
  const helpBefore = only.has("help") && before ? helpTimes(opt.help, before) : [];
  const summary = summarize(results);
  // Each tessera path as a ratio to ssh -L beside the figures; to direct TCP and, with --before, this
  // build to the other binary in a second table (one table with all of them would not fit a screen).
  const ratioCols = (bases: readonly ("ssh" | "direct" | "before")[]) =>
    bases.flatMap((b) =>
      TESSERA_PATHS.filter((tp) => summary.ratiosOf[tp]?.[b]).map((tp) => ({
        tp,
        b,
        head: b === "before" ? `${SHORT[tp]}/${SHORT[BEFORE_OF[tp as keyof typeof BEFORE_OF]]}` : `${SHORT[tp]}/${b}`,
      })),
    );
  const ratioTable = (first: string[], cols: ReturnType<typeof ratioCols>) => {
    const rows: string[][] = [["metric", ...first, ...cols.map((c) => c.head)]];
    for (const m of METRICS)
      rows.push([
        `${m.label} (${m.unit})`,
        ...first.map((name) => fmt(summary.medians[name]![m.key], m.unit === "ms" ? 3 : 2)),
        ...cols.map((c) => ratio(summary.ratiosOf[c.tp]?.[c.b]?.[m.key])),
      ]);
    return table(rows);
  };
  console.log(`\nmedian of ${opt.runs} run(s); ratios are medians of per-run ratios; MB = 10^6 bytes`);
  console.log(
    `load average at start ${loadAtStart.map((l) => l.toFixed(2)).join(" ")}, at end ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} (${os.cpus().length} cores; other work on the machine lowers every figure)\n`,
  );
  console.log(
    ratioTable(
      paths.map((p) => p.name),
      ratioCols(["ssh"]),
    ),
  );
  const more = ratioCols(["direct", "before"]);
  if (more.length) {
    console.log(`\nratios to direct TCP${before ? ", and of this build's paths to the same path of --before" : ""}:`);
    console.log(ratioTable([], more));
  }
  console.log("\npeak RSS (VmHWM) of each process of each path:");
  console.log(
    table([
      ["path", "process", "pid", "peak RSS (MB)"],
      ...rss.map((r) => [r.path, r.role, String(r.pid), fmt(r.peakRssMb, 1)]),
    ]),
  );
  printIdle(idle);
  printCpu(cpu, { rr1: "per request (µs)", rr16: "per pipelined request (µs)", setup: "per stream setup (µs)" });
  if (redis) printRedis(redis);
  if (delayed) printDelayed(delayed);
  if (help.length)
    console.log(
      `\ntessera --help: median ${fmt(median(help.map((h) => h.wallMs)), 1)} ms wall (min ${fmt(Math.min(...help.map((h) => h.wallMs)), 1)}), median ${fmt(median(help.map((h) => h.cpuMs)), 1)} ms CPU, over ${help.length} runs`,
    );
  if (helpBefore.length)
    console.log(
      `--before's --help: median ${fmt(median(helpBefore.map((h) => h.wallMs)), 1)} ms wall, median ${fmt(median(helpBefore.map((h) => h.cpuMs)), 1)} ms CPU`,
    );

  const targets = checkTargets(summary, idle.tessera, median(help.map((h) => h.wallMs)), delayed, redis);
  console.log("\ntargets:");
  for (const tg of targets)
    console.log(`  ${tg.met === undefined ? "n/a " : tg.met ? "MET " : "MISS"}  ${tg.what}: ${tg.value}`);

  const info = Object.fromEntries(paths.map((p) => [p.name, p.info]));
  const json = {
    when: new Date().toISOString(),
    machine: {
      cores: os.cpus().length,
      cpu: os.cpus()[0]?.model,
      loadavgAtStart: loadAtStart,
      loadavgAtEnd: os.loadavg(),
      bun: Bun.version,
    },
    options: opt,
    info,
    results,
    ...summary,
    rss,
    cpu,
    idle,
    delayed,
    redis,
    helpMs: help,
    helpBeforeMs: helpBefore,
    targets,
  };
  fs.mkdirSync(path.dirname(a.json!), { recursive: true });
  fs.writeFileSync(a.json!, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nwrote ${a.json}`);
} finally {
  await cleanup();
}

function ratio(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? "-" : `${fmt(x)}x`;
}

function summarize(results: Record<string, Record<Metric, number[]>>) {
  const medians: Record<string, Record<Metric, number>> = {};
  for (const [name, r] of Object.entries(results)) {
    medians[name] = Object.fromEntries(METRICS.map((m) => [m.key, median(r[m.key])])) as Record<Metric, number>;
  }
  // ratiosOf[path].before: this build's path over the same path of --before's binary.
  const ratiosOf: Record<string, Partial<Record<"ssh" | "direct" | "before", Record<Metric, number>>>> = {};
  for (const tp of TESSERA_PATHS) {
    const t = results[tp];
    if (!t) continue;
    ratiosOf[tp] = {};
    for (const base of ["ssh", "direct", "before"] as const) {
      const b = results[base === "before" ? BEFORE_OF[tp as keyof typeof BEFORE_OF] : base];
      if (!b) continue;
      ratiosOf[tp][base] = Object.fromEntries(
        METRICS.map((m) => [m.key, median(t[m.key].map((x, i) => x / b[m.key][i]!))]),
      ) as Record<Metric, number>;
    }
  }
  // `ratios` stays the relay's (the JSON's readers know it by that name).
  return { medians, ratios: ratiosOf.tessera ?? {}, ratiosOf };
}

function checkTargets(
  s: ReturnType<typeof summarize>,
  idle: IdleResult | undefined,
  helpMs: number,
  delayed: DelayedResult | undefined,
  redis: RedisResult | undefined,
) {
  const t = s.medians.tessera;
  const r = s.ratios;
  const out: { what: string; value: string; met?: boolean }[] = [];
  const add = (what: string, x: number | undefined, ok: (x: number) => boolean, show: (x: number) => string) =>
    out.push({
      what,
      value: x === undefined || Number.isNaN(x) ? "not measured" : show(x),
      met: x === undefined || Number.isNaN(x) ? undefined : ok(x),
    });
  add(
    "1-stream throughput >= 2.0x ssh -L",
    r.ssh?.tp1,
    (x) => x >= 2,
    (x) => `${fmt(x)}x`,
  );
  add(
    "1-stream throughput >= 0.4x direct",
    r.direct?.tp1,
    (x) => x >= 0.4,
    (x) => `${fmt(x)}x`,
  );
  add(
    "8-stream throughput >= 2.5x ssh -L",
    r.ssh?.tp8,
    (x) => x >= 2.5,
    (x) => `${fmt(x)}x`,
  );
  add(
    "stream setup p50 <= 3 ms",
    t?.setupP50,
    (x) => x <= 3,
    (x) => `${fmt(x, 3)} ms`,
  );
  add(
    "stream setup p99 <= 10 ms",
    t?.setupP99,
    (x) => x <= 10,
    (x) => `${fmt(x, 3)} ms`,
  );
  add(
    "64 B round trip p50 <= ssh -L's",
    r.ssh?.rttP50,
    (x) => x <= 1,
    (x) => `${fmt(x)}x ssh (${fmt(t?.rttP50, 3)} vs ${fmt(s.medians.ssh?.rttP50, 3)} ms)`,
  );
  add(
    "req/resp 50 conns >= 1.0x ssh -L",
    r.ssh?.rr1,
    (x) => x >= 1,
    (x) => `${fmt(x)}x`,
  );
  add(
    "req/resp 50 conns >= 0.4x direct",
    r.direct?.rr1,
    (x) => x >= 0.4,
    (x) => `${fmt(x)}x`,
  );
  add(
    "req/resp 50 conns, 16 pipelined >= 1.0x ssh -L",
    r.ssh?.rr16,
    (x) => x >= 1,
    (x) => `${fmt(x)}x`,
  );
  add(
    "stream setup p50 <= 1.0x ssh -L's (back to back)",
    r.ssh?.setupP50,
    (x) => x <= 1,
    (x) => `${fmt(x)}x ssh`,
  );
  add(
    `stream setup p50 <= 1.0x ssh -L's (${SETUP_GAP_MS} ms apart)`,
    r.ssh?.setupGapP50,
    (x) => x <= 1,
    (x) => `${fmt(x)}x ssh (${fmt(t?.setupGapP50, 3)} vs ${fmt(s.medians.ssh?.setupGapP50, 3)} ms)`,
  );
  const dt = delayed?.paths.tessera;
  const ds = delayed?.paths.ssh;
  // Round trips of each path's own length: tessera's path has two delayed hops (guest-coordinator-agent), ssh's one.
  add(
    `delayed link: setup round trips <= ssh -L's channel open`,
    dt && ds ? dt.setupPathRtts / ds.setupPathRtts : undefined,
    (x) => x <= 1,
    (x) =>
      `${fmt(x)}x (${fmt(dt!.setupPathRtts, 2)} vs ${fmt(ds!.setupPathRtts, 2)} path round trips; ${fmt(dt!.setupP50, 1)} vs ${fmt(ds!.setupP50, 1)} ms over ${dt!.hops} vs ${ds!.hops} delayed hops)`,
  );
  add(
    "1,000 idle streams: coordinator < 150 MB RSS",
    idle?.coordinatorRssMb,
    (x) => x < 150,
    (x) => `${fmt(x, 1)} MB`,
  );
  // Issue 29: one data channel per session, so idle streams add no coordinator sockets (two each before).
  add(
    "1,000 idle streams on the relay: coordinator sockets added <= 2",
    idle ? idle.coordinatorSockets - idle.coordinatorSocketsBefore : undefined,
    (x) => x <= 2,
    (x) => `+${x} (${idle!.coordinatorSocketsBefore} -> ${idle!.coordinatorSockets})`,
  );
  add(
    "tessera --help < 60 ms",
    helpMs,
    (x) => x < 60,
    (x) => `${fmt(x, 1)} ms`,
  );
  // A real C client (issue 29's targets): many small requests, and one connection's latency.
  const many = redis?.clients.find((c) => c > 1);
  add(
    `redis-benchmark ${many} clients, direct path >= 1.2x ssh -L`,
    many ? redis?.ratios["tessera-direct"]?.[many]?.rps : undefined,
    (x) => x >= 1.2,
    (x) => `${fmt(x)}x`,
  );
  add(
    `redis-benchmark ${many} clients, relay >= 1.0x ssh -L`,
    many ? redis?.ratios.tessera?.[many]?.rps : undefined,
    (x) => x >= 1,
    (x) => `${fmt(x)}x`,
  );
  add(
    "redis-benchmark 1 client, direct path GET p50 <= 1.0x ssh -L",
    redis?.ratios["tessera-direct"]?.[1]?.p50,
    (x) => x <= 1,
    (x) => `${fmt(x)}x`,
  );
  const d = s.ratiosOf["tessera-direct"];
  add(
    "direct path: 64 B round trip p50 <= ssh -L's",
    d?.ssh?.rttP50,
    (x) => x <= 1,
    (x) => `${fmt(x)}x ssh (${fmt(s.medians["tessera-direct"]?.rttP50, 3)} vs ${fmt(s.medians.ssh?.rttP50, 3)} ms)`,
  );
  add(
    "direct path: req/resp 50 conns >= 1.0x ssh -L",
    d?.ssh?.rr1,
    (x) => x >= 1,
    (x) => `${fmt(x)}x`,
  );
  add(
    "direct path: req/resp 50 conns, 16 pipelined >= 1.0x ssh -L",
    d?.ssh?.rr16,
    (x) => x >= 1,
    (x) => `${fmt(x)}x`,
  );
  add(
    "direct path: req/resp 50 conns >= 0.4x direct",
    d?.direct?.rr1,
    (x) => x >= 0.4,
    (x) => `${fmt(x)}x`,
  );
  add(
    "direct path: 1-stream throughput >= 2.0x ssh -L",
    d?.ssh?.tp1,
    (x) => x >= 2,
    (x) => `${fmt(x)}x`,
  );
  add(
    "direct path: 8-stream throughput >= 2.5x ssh -L",
    d?.ssh?.tp8,
    (x) => x >= 2.5,
    (x) => `${fmt(x)}x`,
  );
  add(
    "direct path: stream setup p50 <= 1.0x ssh -L's (back to back)",
    d?.ssh?.setupP50,
    (x) => x <= 1,
    (x) => `${fmt(x)}x ssh`,
  );
  add(
    `direct path: stream setup p50 <= 1.0x ssh -L's (${SETUP_GAP_MS} ms apart)`,
    d?.ssh?.setupGapP50,
    (x) => x <= 1,
    (x) => `${fmt(x)}x ssh`,
  );
  // Issue 29: bulk no worse than the build given by --before, measured in the same run.
  for (const [tp, name] of [
    ["tessera", "relay"],
    ["tessera-direct", "direct path"],
  ] as const)
    for (const [k, n] of [
      ["tp1", 1],
      ["tp8", 8],
    ] as const)
      add(
        `${name}: ${n}-stream throughput >= --before's`,
        s.ratiosOf[tp]?.before?.[k],
        (x) => x >= 1,
        (x) => `${fmt(x)}x`,
      );
  return out;
}
