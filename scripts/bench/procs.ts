// Every process the benchmark starts: spawned here, tracked by pid, and killed by pid at the end,
// on failure, or on Ctrl-C. Also reads RSS and CPU time of a pid (and its children) from /proc.
import fs from "node:fs";
import type { Subprocess } from "bun";

const live = new Set<Subprocess>();

export class Proc {
  out = "";
  private waiters: (() => void)[] = [];

  constructor(
    readonly name: string,
    readonly p: Subprocess,
  ) {}

  get pid(): number {
    return this.p.pid;
  }

  feed(text: string): void {
    // Keep only a bounded tail: a chatty process must not grow the benchmark's memory.
    this.out = (this.out + text).slice(-64 * 1024);
    for (const w of this.waiters.splice(0)) w();
  }

  async waitFor(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.out.match(re);
      if (m) return m;
      if (this.p.exitCode !== null || Date.now() > deadline) {
        throw new Error(`${this.name}: waited for ${re} (exit ${this.p.exitCode}); output:\n${this.out}`);
      }
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  write(text: string): void {
    const sink = this.p.stdin as import("bun").FileSink;
    sink.write(text);
    sink.flush();
  }

  async stop(): Promise<void> {
    if (this.p.exitCode === null && this.p.signalCode === null) this.p.kill("SIGTERM");
    const t = setTimeout(() => this.p.kill("SIGKILL"), 5000);
    await this.p.exited;
    clearTimeout(t);
  }
}

export function spawn(name: string, cmd: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Proc {
  const p = Bun.spawn(cmd, {
    cwd: opts.cwd,
    env: { ...process.env, NO_COLOR: "1", ...opts.env },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  live.add(p);
  void p.exited.then(() => live.delete(p));
  const proc = new Proc(name, p);
  for (const s of [p.stdout, p.stderr] as ReadableStream<Uint8Array>[]) {
    void (async () => {
      const dec = new TextDecoder();
      for await (const c of s) proc.feed(dec.decode(c, { stream: true }));
    })();
  }
  return proc;
}

/** Runs a command to completion; throws with its output if it fails. */
export async function run(
  name: string,
  cmd: string[],
  opts: { env?: Record<string, string>; cwd?: string } = {},
): Promise<string> {
  const p = spawn(name, cmd, opts);
  const code = await p.p.exited;
  await Bun.sleep(10);
  if (code !== 0) throw new Error(`${name} failed (exit ${code}):\n${p.out}`);
  return p.out;
}

/** Kills every process still running, by pid: SIGTERM, then SIGKILL after a grace period. */
export async function killAll(): Promise<void> {
  const procs = [...live];
  for (const p of procs) p.kill("SIGTERM");
  const t = setTimeout(() => {
    for (const p of procs) p.kill("SIGKILL");
  }, 3000);
  await Promise.all(procs.map((p) => p.exited));
  clearTimeout(t);
}

let hooked = false;
/** On Ctrl-C or SIGTERM, kill what we started before leaving. */
export function killOnSignal(extra: () => void | Promise<void> = () => {}): void {
  if (hooked) return;
  hooked = true;
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      console.error(`\nbench: ${sig}, stopping every process it started`);
      void Promise.resolve(extra()).finally(() => killAll().finally(() => process.exit(130)));
    });
  }
}

function status(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
}

function kb(text: string | undefined, field: string): number {
  const m = text?.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  return m ? Number(m[1]) : 0;
}

/** Peak resident set (VmHWM) in MB. */
export function peakRssMb(pid: number): number {
  return kb(status(pid), "VmHWM") / 1024;
}

/** Current resident set (VmRSS) in MB. */
export function rssMb(pid: number): number {
  return kb(status(pid), "VmRSS") / 1024;
}

const TICK = 100; // USER_HZ on Linux

/** utime + stime of a process in seconds. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / TICK;
  } catch {
    return 0;
  }
}

/** Direct and indirect children of a pid (for sshd's per-connection processes). */
export function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {}
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of parent)
      if (pp === p) {
        out.push(c);
        walk(c);
      }
  };
  walk(pid);
  return out;
}

export function processName(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ").slice(0, 60);
  } catch {
    return String(pid);
  }
}

/** Open sockets of a process (its /proc fd links that say socket:). */
export function socketCount(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:");
      } catch {
        return false;
      }
    }).length;
  } catch {
    return 0;
  }
}
