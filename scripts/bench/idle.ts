// Many concurrent idle streams through one session of a tessera path: what they cost the coordinator
// (memory, sockets, CPU to open them and while they sit idle) and the guest and agent (memory, sockets).
// Per-stream connections cost the coordinator two sockets a stream; one channel a session costs it one
// pair per session, whatever the streams.
import { openIdle } from "./client.ts";
import type { Path } from "./paths.ts";
import { cpuSeconds, rssMb, socketCount } from "./procs.ts";
import { fmt, table } from "./stats.ts";

export interface IdleResult {
  streams: number;
  coordinatorRssBeforeMb: number;
  coordinatorRssMb: number;
  coordinatorSocketsBefore: number;
  coordinatorSockets: number;
  coordinatorCpuSecondsToOpen: number;
  coordinatorCpuPercentIdle: number;
  openSeconds: number;
  agentRssMb: number;
  agentSockets: number;
  guestRssMb: number;
  guestSockets: number;
}

/** How long the streams are held open while the coordinator's CPU is counted. */
const HOLD_MS = 5000;

/** Opens `n` idle streams through `p` (a tessera path: coordinator, agent, guest), measures, closes them. */
export async function measureIdle(p: Path, n: number): Promise<IdleResult> {
  const [coord, agent, guest] = p.processes();
  const rssBefore = rssMb(coord!.pid);
  const socketsBefore = socketCount(coord!.pid);
  const cpu0 = cpuSeconds(coord!.pid);
  const t0 = performance.now();
  const streams = await openIdle(p.port, n);
  const openSeconds = (performance.now() - t0) / 1000;
  const cpu1 = cpuSeconds(coord!.pid);
  await Bun.sleep(HOLD_MS);
  const cpu2 = cpuSeconds(coord!.pid);
  const out: IdleResult = {
    streams: streams.open,
    coordinatorRssBeforeMb: rssBefore,
    coordinatorRssMb: rssMb(coord!.pid),
    coordinatorSocketsBefore: socketsBefore,
    coordinatorSockets: socketCount(coord!.pid),
    coordinatorCpuSecondsToOpen: cpu1 - cpu0,
    coordinatorCpuPercentIdle: ((cpu2 - cpu1) / (HOLD_MS / 1000)) * 100,
    openSeconds,
    agentRssMb: rssMb(agent!.pid),
    agentSockets: socketCount(agent!.pid),
    guestRssMb: rssMb(guest!.pid),
    guestSockets: socketCount(guest!.pid),
  };
  streams.close();
  return out;
}

export function printIdle(idle: Record<string, IdleResult>): void {
  const names = Object.keys(idle);
  if (!names.length) return;
  const row = (label: string, f: (r: IdleResult) => string) => [label, ...names.map((n) => f(idle[n]!))];
  console.log(`\n${idle[names[0]!]!.streams} concurrent idle streams through one session of each path:`);
  console.log(
    table([
      ["", ...names],
      row("streams open", (r) => String(r.streams)),
      row("coordinator RSS before (MB)", (r) => fmt(r.coordinatorRssBeforeMb, 1)),
      row("coordinator RSS with streams (MB)", (r) => fmt(r.coordinatorRssMb, 1)),
      row(
        "coordinator sockets before / with streams",
        (r) => `${r.coordinatorSocketsBefore} / ${r.coordinatorSockets}`,
      ),
      row("coordinator CPU to open them (s)", (r) => fmt(r.coordinatorCpuSecondsToOpen)),
      row("coordinator CPU while idle (%)", (r) => fmt(r.coordinatorCpuPercentIdle)),
      row("agent RSS (MB) / sockets", (r) => `${fmt(r.agentRssMb, 1)} / ${r.agentSockets}`),
      row("guest RSS (MB) / sockets", (r) => `${fmt(r.guestRssMb, 1)} / ${r.guestSockets}`),
      row("time to open all (s)", (r) => fmt(r.openSeconds)),
    ]),
  );
}
