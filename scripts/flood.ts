// `bun scripts/flood.ts`: a bounded flood from loopback against a compiled coordinator (issue 12): TLS
// handshakes opened and closed, silent connections (some holding half a 64 KiB frame, some stalled in the
// TLS handshake) and a burst from one
// address. Around each, a host shares, a guest joins and opens streams, /healthz is read and the
// coordinator's RSS recorded. Loopback only, bounded in count and time; every process it starts is killed by pid.
// Options: --bin PATH (default dist/tessera)  --handshakes N  --silent N  --half N  --stalled N  --burst N
//          --hold-max SECONDS (how long silent connections may stay before the script cuts them)  --json FILE
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { handshake, hold, pool, sources, stall, type Held, type Target } from "./flood/attack.ts";
import { deploy, echo, healthz, legitRound, metrics, type Deployment, type LegitResult } from "./flood/legit.ts";
import { killAll, killOnSignal, rssMb, run } from "./bench/procs.ts";

const ROOT = path.resolve(import.meta.dir, "..");
const { values: a } = parseArgs({
  options: {
    bin: { type: "string", default: path.join(ROOT, "dist/tessera") },
    handshakes: { type: "string", default: "10000" },
    silent: { type: "string", default: "2000" },
    half: { type: "string", default: "500" },
    stalled: { type: "string", default: "500" },
    burst: { type: "string", default: "1000" },
    "hold-max": { type: "string", default: "60" },
    json: { type: "string" },
  },
});
const count = (name: keyof typeof a, max: number): number => {
  const n = Number(a[name]);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new Error(`--${name} must be a whole number from 0 to ${max}`);
  return n;
};
const opt = {
  handshakes: count("handshakes", 20_000),
  silent: count("silent", 5_000),
  half: count("half", 2_000),
  stalled: count("stalled", 2_000),
  burst: count("burst", 5_000),
  holdMaxMs: count("hold-max", 180) * 1000,
};
const WIDTH = 64; // connections in flight at once
const PER_ADDRESS = 200; // silent connections per source address: under the default per-address cap
const TIME_LIMIT_MS = 15 * 60_000;

const bin = path.resolve(a.bin!);
if (!fs.existsSync(bin)) throw new Error(`${bin} does not exist: run \`bun run build\` first or pass --bin`);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-flood-"));
const held: Held[] = [];
let target: { port: number; close: () => void } | undefined;
const cleanup = async () => {
  for (const h of held) h.sock.destroy();
  await killAll();
  target?.close();
  fs.rmSync(dir, { recursive: true, force: true });
};
killOnSignal(cleanup);
const watchdog = setTimeout(() => {
  say(`time limit of ${TIME_LIMIT_MS / 60_000} minutes reached; stopping`);
  void cleanup().finally(() => process.exit(1));
}, TIME_LIMIT_MS);

function say(s: string): void {
  console.error(`flood: ${s}`);
}

const report: Record<string, unknown> = { bin, version: "", options: opt, startedAt: new Date().toISOString() };
const legit = (r: LegitResult) =>
  r.joined ? `joined in ${r.joinMs} ms, ${r.streamsOk}/${r.streams} streams ok` : `could not join: ${r.error}`;

async function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const out = await fn();
  say(`${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  return out;
}

/** Samples RSS once a second until it is within 10% of `baseline` or `ms` passed; returns the samples. */
async function settle(d: Deployment, baseline: number, ms: number): Promise<number[]> {
  const samples = [rssMb(d.coordinator.pid)];
  const until = Date.now() + ms;
  while (samples.at(-1)! > baseline * 1.1 && Date.now() < until) {
    await Bun.sleep(1000);
    samples.push(rssMb(d.coordinator.pid));
  }
  return samples.map((s) => Math.round(s));
}

try {
  report.version = (await run("tessera version", [bin, "--version"])).trim();
  const d = await deploy(bin, dir);
  target = await echo();
  const t: Target = { port: d.port, ca: d.ca };
  say(
    `${report.version} coordinator pid ${d.coordinator.pid} on 127.0.0.1:${d.port}; ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(2)}`,
  );

  const warm = await phase("warm-up round", () => legitRound(d, target!.port, "warmup"));
  await Bun.sleep(2000);
  const baseline = Math.round(rssMb(d.coordinator.pid));
  report.before = { legit: warm, healthz: await healthz(d), rssMb: baseline };
  say(
    `baseline: ${legit(warm)}; /healthz ${report.before && (report.before as { healthz: string }).healthz}; RSS ${baseline} MB`,
  );

  // 1. TLS handshakes, each closed at once, taking turns over 8 source addresses.
  const hs = await phase(`${opt.handshakes} TLS handshakes`, async () => {
    const t0 = Date.now();
    const ok = await pool(opt.handshakes, WIDTH, (i) => handshake(t, `127.3.0.${(i % 8) + 1}`));
    return {
      completed: ok.filter(Boolean).length,
      refused: ok.filter((x) => !x).length,
      seconds: (Date.now() - t0) / 1000,
    };
  });
  const afterHs = {
    ...hs,
    healthz: await healthz(d),
    rssMb: Math.round(rssMb(d.coordinator.pid)),
    legit: await legitRound(d, target.port, "afterhandshakes"),
  };
  report.handshakes = afterHs;
  say(
    `handshakes: ${hs.completed} completed, ${hs.refused} refused in ${hs.seconds.toFixed(1)} s; /healthz ${afterHs.healthz}; RSS ${afterHs.rssMb} MB; guest ${legit(afterHs.legit)}`,
  );

  // 2. Silent connections (hello, then nothing), some holding half a maximal frame, spread over addresses.
  const holdStart = Date.now();
  const silentFrom = sources(5, opt.silent, PER_ADDRESS);
  const halfFrom = sources(6, opt.half, PER_ADDRESS);
  const silent = (await pool(opt.silent, WIDTH, (i) => hold(t, silentFrom[i]!))).filter((h): h is Held => !!h);
  const half = (await pool(opt.half, WIDTH, (i) => hold(t, halfFrom[i]!, true))).filter((h): h is Held => !!h);
  const stalledFrom = sources(8, opt.stalled, PER_ADDRESS);
  const stalled = (await pool(opt.stalled, WIDTH, (i) => stall(t, stalledFrom[i]!))).filter((h): h is Held => !!h);
  held.push(...silent, ...half, ...stalled);
  const during = {
    silentHeld: silent.length,
    halfHeld: half.length,
    stalledHeld: stalled.length,
    healthz: await healthz(d),
    rssMb: Math.round(rssMb(d.coordinator.pid)),
    legit: await legitRound(d, target.port, "duringsilent"),
  };
  say(
    `holding ${silent.length}/${opt.silent} silent, ${half.length}/${opt.half} half-frame and ${stalled.length}/${opt.stalled} stalled-handshake connections; /healthz ${during.healthz}; RSS ${during.rssMb} MB; guest ${legit(during.legit)}`,
  );
  const closedAt: (number | undefined)[] = await Promise.all(
    held.map((h) =>
      Promise.race([h.closed, Bun.sleep(Math.max(0, holdStart + opt.holdMaxMs - Date.now())).then(() => undefined)]),
    ),
  );
  const byCoordinator = (hs: Held[], from: number) =>
    closedAt.slice(from, from + hs.length).filter((x) => x !== undefined) as number[];
  const cut = (xs: number[]) => ({
    closedByCoordinator: xs.length,
    lastClosedAfterS: xs.length ? (Math.max(...xs) - holdStart) / 1000 : null,
  });
  report.silent = {
    ...during,
    silent: cut(byCoordinator(silent, 0)),
    half: cut(byCoordinator(half, silent.length)),
    stalled: cut(byCoordinator(stalled, silent.length + half.length)),
    holdMaxS: opt.holdMaxMs / 1000,
    peakRssMb: Math.round(rssMb(d.coordinator.pid)),
  };
  const cuts = report.silent as Record<"silent" | "half" | "stalled", unknown>;
  say(
    `closed by the coordinator: silent ${JSON.stringify(cuts.silent)}; half-frame ${JSON.stringify(cuts.half)}; stalled handshake ${JSON.stringify(cuts.stalled)}`,
  );
  for (const h of held.splice(0)) h.sock.destroy();

  // 3. A burst from one address: the per-address cap admits only so many.
  const burst = (await pool(opt.burst, WIDTH, () => hold(t, "127.7.0.1"))).filter((h): h is Held => !!h);
  report.burst = { tried: opt.burst, admitted: burst.length, fromOneAddress: "127.7.0.1" };
  say(`burst from one address: ${burst.length} of ${opt.burst} admitted`);
  for (const h of burst) h.sock.destroy();

  // 4. Afterwards: memory back near the baseline, /healthz, a guest, and the audit chain.
  const samples = await settle(d, baseline, 60_000);
  const after = {
    rssMbSamples: samples,
    rssMb: samples.at(-1),
    healthz: await healthz(d),
    legit: await legitRound(d, target.port, "after"),
  };
  const verify = await run("tessera audit verify", [bin, "audit", "verify", path.join(dir, "audit.jsonl")]).catch(
    (e: Error) => `FAILED: ${e.message}`,
  );
  const audit = fs
    .readFileSync(path.join(dir, "audit.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { event: string; guest?: string });
  report.after = {
    ...after,
    refused: await metrics(d, "tessera_connections_refused_total"),
    auditVerify: verify
      .trim()
      .split("\n")
      .map((l) => l.trim())
      .join("; "),
    legitSessionsInAudit: audit.filter((e) => e.event === "session.open").map((e) => e.guest),
  };
  say(
    `after: RSS ${samples[0]} MB at once, ${samples.at(-1)} MB after ${samples.length - 1} s (baseline ${baseline} MB); /healthz ${after.healthz}; guest ${legit(after.legit)}`,
  );
  say(`connections refused on arrival: ${JSON.stringify((report.after as { refused: unknown }).refused)}`);
  say(
    `audit: ${(report.after as { auditVerify: string }).auditVerify}; sessions logged for ${(report.after as { legitSessionsInAudit: string[] }).legitSessionsInAudit.join(", ")}`,
  );
  console.log(JSON.stringify(report, null, 2));
  if (a.json) fs.writeFileSync(a.json, `${JSON.stringify(report, null, 2)}\n`);
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
