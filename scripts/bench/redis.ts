// A real C client beside the bench's own: redis-benchmark (GET and SET) against a private redis-server,
// through direct TCP, ssh -L, tessera's relay (--relay-only) and tessera's default (direct) path (and
// another binary's two with --before), with many clients and with one. Each run takes every path back to back, so the ratios compare like with like.
import fs from "node:fs";
import path from "node:path";
import { direct, freePort, SHORT, ssh, TESSERA_PATHS, tesseraPaths, type Path, type Probe } from "./paths.ts";
import { run, spawn, type Proc } from "./procs.ts";
import { fmt, median, table } from "./stats.ts";

export interface RedisResult {
  clients: number[];
  /** per path, per client count: GET+SET requests per second (total requests / total time), one per run */
  rps: Record<string, Record<number, number[]>>;
  /** per path, per client count: GET's p50 latency in ms as redis-benchmark reports it, one per run */
  p50: Record<string, Record<number, number[]>>;
  /** per tessera path, per client count: median of per-run ratios to ssh -L (rps, p50) */
  ratios: Record<string, Record<number, { rps: number; p50: number }>>;
  version: string;
}

/** Whether this machine can run the redis workload (the test services script installs both). */
export function haveRedis(): boolean {
  return ["/usr/bin/redis-server", "/usr/bin/redis-benchmark"].every((f) => fs.existsSync(f));
}

/** PING answered by PONG through `port`: the redis paths' readiness check (the echo probe would hang). */
const pingProbe: Probe = async (port) => {
  const out = await Bun.$`redis-cli -h 127.0.0.1 -p ${port} PING`.quiet().nothrow();
  if (!out.stdout.toString().includes("PONG")) throw new Error(`no PONG through ${port}`);
};

async function startRedis(dir: string): Promise<{ port: number; proc: Proc }> {
  const port = await freePort();
  const d = fs.mkdtempSync(path.join(dir, "redis-"));
  const proc = spawn("redis-server", [
    "redis-server",
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    d,
    "--daemonize",
    "no",
  ]);
  await proc.waitFor(/Ready to accept connections/);
  return { port, proc };
}

/** One redis-benchmark run of GET and SET: aggregate requests per second and GET's p50 (ms). */
async function redisBench(port: number, clients: number, requests: number): Promise<{ rps: number; p50: number }> {
  const out = await run("redis-benchmark", [
    "redis-benchmark",
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-c",
    String(clients),
    "-n",
    String(requests),
    "-t",
    "set,get",
    "--csv",
  ]);
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
  const rows = out
    .split("\n")
    .filter((l) => /^"(SET|GET)"/.test(l))
    .map((l) => l.split(",").map((c) => c.replace(/"/g, "")));
  const get = rows.find((r) => r[0] === "GET");
  const set = rows.find((r) => r[0] === "SET");
  if (!get || !set) throw new Error(`redis-benchmark printed no GET/SET rows:\n${out}`);
  const secs = requests / Number(get[1]) + requests / Number(set[1]);
  return { rps: (2 * requests) / secs, p50: Number(get[4]) };
}

/** Sets the redis paths up, measures them `runs` times interleaved, stops them. */
export async function measureRedis(
  dir: string,
  wanted: Set<string>,
  before: string | undefined,
  runs: number,
  clients: number[],
  requestsFor: (clients: number) => number,
  say: (s: string) => void,
): Promise<RedisResult> {
  const redis = await startRedis(dir);
  const paths: Path[] = [];
  try {
    if (wanted.has("direct")) paths.push(await direct(redis));
    if (wanted.has("ssh")) paths.push(await ssh(redis.port, dir, undefined, pingProbe));
    paths.push(...(await tesseraPaths(redis.port, dir, wanted, before, { probe: pingProbe })));
    const res: RedisResult = { clients, rps: {}, p50: {}, ratios: {}, version: "" };
    res.version = (await run("redis-server --version", ["redis-server", "--version"])).trim();
    for (const p of paths) {
      res.rps[p.name] = Object.fromEntries(clients.map((c) => [c, []]));
      res.p50[p.name] = Object.fromEntries(clients.map((c) => [c, []]));
      await redisBench(p.port, Math.max(...clients), 5000); // warm-up, not measured
    }
    for (let r = 0; r < runs; r++) {
      for (const c of clients) {
        for (const p of paths.map((_, i) => paths[(i + r) % paths.length]!)) {
          await Bun.sleep(300);
          const m = await redisBench(p.port, c, requestsFor(c));
          res.rps[p.name]![c]!.push(m.rps);
          res.p50[p.name]![c]!.push(m.p50);
        }
      }
      say(
        `redis run ${r + 1}/${runs}: ` +
          paths
            .map((p) => `${p.name} ${clients.map((c) => fmt(res.rps[p.name]![c]!.at(-1))).join("/")} req/s`)
            .join("; "),
      );
    }
    for (const tp of TESSERA_PATHS) {
      if (!res.rps[tp] || !res.rps.ssh) continue;
      res.ratios[tp] = {};
      for (const c of clients) {
        const ratio = (m: RedisResult["rps"]) => median(m[tp]![c]!.map((x, i) => x / m.ssh![c]![i]!));
        res.ratios[tp][c] = { rps: ratio(res.rps), p50: ratio(res.p50) };
      }
    }
    return res;
  } finally {
    for (const p of paths) await p.stop().catch(() => {});
    await redis.proc.stop().catch(() => {});
  }
}

export function printRedis(r: RedisResult): void {
  const names = Object.keys(r.rps);
  const ratioCols = Object.keys(r.ratios).map((tp) => ({ tp, head: `${SHORT[tp as keyof typeof SHORT] ?? tp}/ssh` }));
  const rows: string[][] = [["redis-benchmark GET+SET", ...names, ...ratioCols.map((c) => c.head)]];
  for (const c of r.clients) {
    rows.push([
      `${c} client${c === 1 ? "" : "s"} (req/s)`,
      ...names.map((n) => fmt(median(r.rps[n]![c]!))),
      ...ratioCols.map((k) => `${fmt(r.ratios[k.tp]![c]!.rps)}x`),
    ]);
    rows.push([
      `${c} client${c === 1 ? "" : "s"}, GET p50 (ms)`,
      ...names.map((n) => fmt(median(r.p50[n]![c]!), 3)),
      ...ratioCols.map((k) => `${fmt(r.ratios[k.tp]![c]!.p50)}x`),
    ]);
  }
  console.log(`\n${r.version.split(" ").slice(0, 3).join(" ")}; medians, ratios are medians of per-run ratios:`);
  console.log(table(rows));
}
