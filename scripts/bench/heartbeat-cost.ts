// What heartbeats cost: N quiet control connections watched by the one ticker (wire/heartbeat.ts),
// measured as CPU time per tick and per second of idling, in this process. Usage: bun scripts/bench/heartbeat-cost.ts [N]
import { watchLiveness, type Beating } from "../../src/wire/heartbeat.ts";

const n = Number(process.argv[2] ?? 1000);
let pings = 0;
const now = Date.now();
const stops: (() => void)[] = [];
for (let i = 0; i < n; i++) {
  // Heard from just now, so no one is pinged or cut: the steady state of idle, healthy sessions.
  const b: Beating = {
    heardAt: now + 3_600_000,
    pingedAt: now,
    heartbeat: { pingMs: 15_000, deadMs: 45_000 },
    ping: () => pings++,
    gone: () => {},
  };
  stops.push(watchLiveness(b));
}
const before = process.cpuUsage();
const t0 = performance.now();
await Bun.sleep(5_000);
const cpu = process.cpuUsage(before);
const wall = performance.now() - t0;
for (const s of stops) s();
const cpuMs = (cpu.user + cpu.system) / 1000;
console.log(
  `${n} watched connections, ${(wall / 1000).toFixed(1)} s idle: ${cpuMs.toFixed(1)} ms CPU (${((cpuMs / wall) * 100).toFixed(3)}% of one core), ${pings} pings, RSS ${(process.memoryUsage().rss / 1e6).toFixed(1)} MB`,
);
