// `bun scripts/faults.ts [SCENARIO...]`: the fault rig by hand (issue 26). Each scenario starts its own
// private PostgreSQL, compiled coordinator nodes and HAProxy on loopback, runs relayed guests (long-lived
// streams plus loops of short 10 KB streams checked byte for byte), injects its fault, and prints what it
// measured: counts, and every "within N s" as a figure. Every process it starts is killed by pid.
// Scenarios: steady, outage10, outage60, partition, sigkill, rolling (default: all but steady).
// Options: --steady-seconds N (default 100)  --guests N (default 3)  --drain DURATION (rolling; default 5s)
//          --json FILE
// Needs PostgreSQL's server binaries and haproxy (scripts/test-services.sh installs both) and `bun run build`.
import fs from "node:fs";
import { parseArgs } from "node:util";
import { killAll } from "../test/e2e/harness.ts";
import { dbOutage, partition, rolling, sigkill, steady, type Figures } from "../test/faults/scenarios.ts";

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "steady-seconds": { type: "string", default: "100" },
    guests: { type: "string", default: "3" },
    drain: { type: "string", default: "5s" },
    json: { type: "string" },
  },
});
const guests = Number(a.guests);
const scenarios: Record<string, () => Promise<Figures>> = {
  steady: () => steady({ seconds: Number(a["steady-seconds"]), guests }),
  outage10: () => dbOutage({ outageMs: 10_000, guests }),
  outage60: () => dbOutage({ outageMs: 60_000, guests }),
  partition: () => partition({ guests }),
  sigkill: () => sigkill({ guests }),
  rolling: () => rolling({ guests, drain: a.drain }),
};
const chosen = positionals.length ? positionals : ["outage10", "outage60", "partition", "sigkill", "rolling"];
for (const name of chosen)
  if (!scenarios[name]) throw new Error(`unknown scenario "${name}"; one of ${Object.keys(scenarios).join(", ")}`);

for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.once(sig, () => void killAll().finally(() => process.exit(130)));

const results: Record<string, Figures | { error: string }> = {};
for (const name of chosen) {
  const started = Date.now();
  console.log(`== ${name}`);
  try {
    const f = await scenarios[name]!();
    results[name] = f;
    for (const [k, v] of Object.entries(f))
      console.log(`  ${k.padEnd(28)} ${Array.isArray(v) ? `${v.length} ${JSON.stringify(v)}` : v}`);
  } catch (err) {
    results[name] = { error: (err as Error).message };
    console.log(`  FAILED: ${(err as Error).message}`);
  } finally {
    await killAll();
  }
  console.log(`  (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}
if (a.json) fs.writeFileSync(a.json, `${JSON.stringify(results, null, 2)}\n`);
