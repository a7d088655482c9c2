// The delayed-link path of the benchmark: the same three paths, with a fixed-delay forwarder
// (delay.ts, loopback) on every hop that would cross a network: client -> target for direct,
// ssh -> sshd for ssh -L, agent -> coordinator and guest -> coordinator for tessera. Reports what a
// new stream costs there, in milliseconds and in round trips of the forwarder.
import { roundTrips, setupTimes } from "./client.ts";
import { delayedLegs, direct, ssh, tesseraPaths, type Path } from "./paths.ts";
import type { Proc } from "./procs.ts";
import { fmt, percentile, table } from "./stats.ts";

export interface DelayedResult {
  delayMs: number;
  /** One forwarder hop's round trip: 2 x delay. */
  legRttMs: number;
  /** Per path: hops crossed, setup p50 (connect to first echoed byte), 64 B round trip p50 on an open stream. */
  paths: Record<
    string,
    { hops: number; setupP50: number; setupMin: number; rttP50: number; setupLegRtts: number; setupPathRtts: number }
  >;
}

// The direct paths are not run on the delayed link (their agent -> guest hop bypasses the forwarders); one hop if they were.
const HOPS: Record<Path["name"], number> = {
  direct: 1,
  ssh: 1,
  tessera: 2,
  "tessera-direct": 1,
  before: 2,
  "before-direct": 1,
};

/** Sets the delayed paths up, measures them one after another, and stops them (and their forwarders). */
export async function measureDelayed(
  target: { port: number; proc: Proc },
  dir: string,
  wanted: Set<string>,
  before: string | undefined,
  delayMs: number,
  setups: number,
): Promise<DelayedResult> {
  const forwarders: Proc[] = [];
  const via = delayedLegs(delayMs, forwarders);
  const paths: Path[] = [];
  try {
    if (wanted.has("direct")) paths.push(await direct(target, via));
    if (wanted.has("ssh")) paths.push(await ssh(target.port, dir, via));
    const relays = new Set([...wanted].filter((w) => w === "tessera" || w === "before"));
    paths.push(...(await tesseraPaths(target.port, dir, relays, before, { via })));
    const out: DelayedResult = { delayMs, legRttMs: 2 * delayMs, paths: {} };
    for (const p of paths) {
      await setupTimes(p.port, 3); // warm-up, not measured
      const t = await setupTimes(p.port, setups);
      const rtt = percentile(await roundTrips(p.port, 20, 64, 3), 50);
      const setupP50 = percentile(t, 50);
      out.paths[p.name] = {
        hops: HOPS[p.name],
        setupP50,
        setupMin: Math.min(...t),
        rttP50: rtt,
        setupLegRtts: setupP50 / (2 * delayMs),
        setupPathRtts: setupP50 / rtt,
      };
    }
    return out;
  } finally {
    for (const p of paths) await p.stop().catch(() => {});
    for (const f of forwarders) await f.stop().catch(() => {});
  }
}

export function printDelayed(r: DelayedResult): void {
  console.log(
    `\ndelayed link: a forwarder adding ${r.delayMs} ms each way (one hop's round trip ${r.legRttMs} ms) on every hop;`,
  );
  console.log(
    "setup = connect() to the first echoed byte; a plain TCP connection pays 2 round trips (SYN, then the echo)",
  );
  const rows = [
    [
      "path",
      "delayed hops",
      "setup p50 (ms)",
      "setup min (ms)",
      "64 B rtt p50 (ms)",
      "setup / hop rtt",
      "setup / path rtt",
    ],
  ];
  for (const [name, p] of Object.entries(r.paths)) {
    rows.push([
      name,
      String(p.hops),
      fmt(p.setupP50, 1),
      fmt(p.setupMin, 1),
      fmt(p.rttP50, 1),
      fmt(p.setupLegRtts),
      fmt(p.setupPathRtts),
    ]);
  }
  const s = r.paths.ssh;
  for (const name of ["tessera", "before"]) {
    const t = r.paths[name];
    if (!t || !s) continue;
    rows.push([
      `${name}/ssh`,
      "",
      `${fmt(t.setupP50 / s.setupP50)}x`,
      `${fmt(t.setupMin / s.setupMin)}x`,
      `${fmt(t.rttP50 / s.rttP50)}x`,
      "",
      "",
    ]);
  }
  console.log(table(rows));
}
