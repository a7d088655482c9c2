// CPU time each process of a path spends per unit of work (per request, per stream), read from
// /proc around a measurement: the per-message and per-stream cost a profile's shares are applied to.
import type { Path } from "./paths.ts";
import { cpuSeconds } from "./procs.ts";
import { fmt, median, table } from "./stats.ts";

/** cost[workload][path][role] = per-run CPU per unit, in µs. */
export type CpuCost = Record<string, Record<string, Record<string, number[]>>>;

/** Starts counting a path's processes' CPU; the returned function takes the units of work done and records µs per unit. */
export function cpuMeter(cost: CpuCost, workload: string, p: Path): (units: number) => void {
  const procs = p.processes();
  const before = procs.map((q) => cpuSeconds(q.pid));
  return (units) => {
    const per = ((cost[workload] ??= {})[p.name] ??= {});
    for (const [i, q] of procs.entries())
      (per[q.role] ??= []).push(((cpuSeconds(q.pid) - before[i]!) * 1e6) / Math.max(units, 1));
  };
}

export function printCpu(cost: CpuCost, labels: Record<string, string>): void {
  const workloads = Object.keys(cost);
  if (!workloads.length) return;
  const rows = [["path", "process", ...workloads.map((w) => labels[w] ?? w)]];
  const keys = new Set<string>();
  for (const w of workloads)
    for (const [path, roles] of Object.entries(cost[w]!))
      for (const role of Object.keys(roles)) keys.add(`${path}\t${role}`);
  for (const k of keys) {
    const [path, role] = k.split("\t") as [string, string];
    rows.push([path, role, ...workloads.map((w) => fmt(median(cost[w]![path]?.[role] ?? []), 1))]);
  }
  for (const path of new Set([...keys].map((k) => k.split("\t")[0]!))) {
    rows.push([
      path,
      "all of the path",
      ...workloads.map((w) =>
        fmt(
          Object.values(cost[w]![path] ?? {}).reduce((a, r) => a + median(r), 0),
          1,
        ),
      ),
    ]);
  }
  console.log(
    "\nCPU per unit of work, by process (µs; /proc utime+stime at 10 ms resolution, so small per-stream figures are coarse):",
  );
  console.log(table(rows));
}
