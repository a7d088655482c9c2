// A deployment under load for the fault scenarios: one host sharing an echo server through HAProxy and
// several guests (also through HAProxy, so they land on any node), each running a long-lived stream and
// a loop of short checked streams.
import { echoServer, spawn, type Proc } from "../e2e/harness.ts";
import type { Rig } from "./cluster.ts";
import { LongStream, ShortLoop } from "./load.ts";

export interface GuestLoad {
  name: string;
  proc: Proc;
  local: number;
  long: LongStream;
  short: ShortLoop;
}

export interface Workload {
  host: Proc;
  guests: GuestLoad[];
  stop(): Promise<void>;
}

export interface WorkloadOptions {
  /** Names the host's TESSERA_HOME and prefixes its guests' names. */
  name?: string;
  /** Where the host and its guests dial (default: HAProxy). */
  address?: string;
}

/** Starts a host and `guests` guests (each approved with `y`), then their streams; resolves once every guest moved data. */
export async function startWorkload(rig: Rig, guests: number, o: WorkloadOptions = {}): Promise<Workload> {
  const echo = await echoServer();
  const prefix = o.name ? `${o.name}-` : "";
  // One enrolled host machine (enrolment tokens are single use); each workload's share dials its own address.
  const hostEnv = { ...(await rig.hostEnv()), ...(o.address ? { TESSERA_COORDINATOR: o.address } : {}) };
  const host = spawn(["share", "--port", String(echo.port)], hostEnv, { cwd: rig.dir });
  let code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]!;
  const out: GuestLoad[] = [];
  for (let i = 0; i < guests; i++) {
    const name = `${prefix}g${i + 1}`;
    const env = await rig.link(name, { address: o.address });
    // Relayed, so the streams cross the coordinators (a direct path on loopback would bypass them).
    const proc = spawn(["join", code, "--name", name, "--local", "127.0.0.1:0", "--relay-only"], env);
    await host.waitFor(new RegExp(`Allow ${name} `));
    host.write("y\n");
    const local = Number((await proc.waitFor(/forwarding 127\.0\.0\.1:(\d+)/, 60_000))[1]);
    out.push({ name, proc, local, long: new LongStream(local), short: new ShortLoop(local) });
    if (i + 1 < guests) code = await nextCode(host);
  }
  await Promise.all(out.map(async (g) => Promise.all([g.long.echoedMore(2048), g.short.succeeded(2)])));
  return {
    host,
    guests: out,
    async stop() {
      for (const g of out) g.long.stop();
      await Promise.all(out.map((g) => g.short.stop()));
    },
  };
}

/** Asks the running `share` for another code (`c`) and returns it. */
export async function nextCode(host: Proc): Promise<string> {
  const seen = host.all.match(/^code: [0-9A-Z]{4}-[0-9A-Z]{4}\r?$/gm)?.length ?? 0;
  host.write("c\n");
  const re = /^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/gm;
  for (;;) {
    const all = [...host.all.matchAll(re)];
    if (all.length > seen) return all.at(-1)![1]!;
    await host.waitFor(new RegExp(`(?:code: [0-9A-Z]{4}-[0-9A-Z]{4}[\\s\\S]*){${seen + 1}}`));
  }
}

/** Lines in a process's output that say its control connection was lost. */
export function cuts(p: Proc): string[] {
  return p.all.split("\n").filter((l) => /lost the connection to the coordinator/.test(l));
}
