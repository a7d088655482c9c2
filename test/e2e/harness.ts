// One shared harness for end-to-end tests: real tessera processes on loopback, real target servers,
// every process tracked by pid and killed at the end.
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { Subprocess } from "bun";

const ROOT = path.resolve(import.meta.dir, "../..");
export const BIN = path.join(ROOT, "dist/tessera");
/** The compiled binary when built (bun run test builds it), else the CLI entry under bun. */
export const TESSERA: string[] = fs.existsSync(BIN) ? [BIN] : ["bun", path.join(ROOT, "src/main.ts")];

const live = new Set<Subprocess>();
const servers = new Set<net.Server>();

export function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "tessera-e2e-"));
}

export class Proc {
  out = "";
  err = "";
  private waiters: (() => void)[] = [];

  constructor(
    readonly proc: Subprocess,
    readonly pty: boolean,
  ) {}

  feed(which: "out" | "err", text: string): void {
    this[which] += text;
    for (const w of this.waiters.splice(0)) w();
  }

  get all(): string {
    return this.out + this.err;
  }

  /** Waits until the output matches; fails with the output so far if the process exits first. */
  async waitFor(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.all.match(re);
      if (m) return m;
      if (this.proc.exitCode !== null || Date.now() > deadline) {
        // Give stdio a moment to drain after exit.
        await Bun.sleep(50);
        const again = this.all.match(re);
        if (again) return again;
        throw new Error(
          `waiting for ${re} (exit ${this.proc.exitCode}):\n--- stdout\n${this.out}\n--- stderr\n${this.err}`,
        );
      }
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  write(text: string): void {
    if (this.pty) this.proc.terminal!.write(text);
    else (this.proc.stdin as import("bun").FileSink).write(text);
  }

  async exit(timeoutMs = 20_000): Promise<number> {
    const t = setTimeout(() => this.proc.kill("SIGKILL"), timeoutMs);
    const code = await this.proc.exited;
    clearTimeout(t);
    await Bun.sleep(20);
    return code;
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    this.proc.kill(signal);
  }
}

export function spawn(
  args: string[],
  env: Record<string, string> = {},
  opts: { pty?: boolean; cwd?: string } = {},
): Proc {
  return spawnArgv([...TESSERA, ...args], env, opts);
}

/** Like spawn, for any program (e.g. `sh -c` around tessera inside one PTY). */
export function spawnArgv(
  argv: string[],
  env: Record<string, string> = {},
  opts: { pty?: boolean; cwd?: string } = {},
): Proc {
  const fullEnv = { ...process.env, NO_COLOR: "1", ...env };
  let p!: Proc;
  const dec = new TextDecoder();
  const proc = opts.pty
    ? Bun.spawn(argv, {
        env: fullEnv,
        cwd: opts.cwd,
        terminal: { cols: 120, rows: 40, data: (_t, d) => p.feed("out", dec.decode(d, { stream: true })) },
      })
    : Bun.spawn(argv, { env: fullEnv, cwd: opts.cwd, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  p = new Proc(proc, !!opts.pty);
  live.add(proc);
  void proc.exited.then(() => live.delete(proc));
  if (!opts.pty) {
    void pump(proc.stdout as ReadableStream<Uint8Array>, (s) => p.feed("out", s));
    void pump(proc.stderr as ReadableStream<Uint8Array>, (s) => p.feed("err", s));
  }
  return p;
}

async function pump(stream: ReadableStream<Uint8Array>, sink: (s: string) => void): Promise<void> {
  const dec = new TextDecoder();
  for await (const chunk of stream) sink(dec.decode(chunk, { stream: true }));
}

/** Runs a short command to completion. */
export async function run(
  args: string[],
  env: Record<string, string> = {},
  cwd?: string,
): Promise<{ code: number; out: string; err: string }> {
  const p = spawn(args, env, { cwd });
  const code = await p.exit();
  return { code, out: p.out, err: p.err };
}

export async function killAll(): Promise<void> {
  for (const proc of live) proc.kill("SIGKILL");
  await Promise.all([...live].map((p) => p.exited));
  for (const s of servers) s.close();
  servers.clear();
}

/** A TCP echo server that honours half-close: echoes everything, ends after the client ends. */
export async function echoServer(): Promise<{ port: number; received: () => Buffer }> {
  const chunks: Buffer[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("data", (d) => chunks.push(Buffer.from(d)));
    s.on("error", () => {});
    s.pipe(s);
  });
  servers.add(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, received: () => Buffer.concat(chunks) };
}

/** Sends payload, half-closes, and resolves with everything received until the server ends. */
export function roundTrip(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const s = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => s.end(payload));
    s.on("data", (d: Buffer) => got.push(d));
    s.on("end", () => resolve(Buffer.concat(got)));
    s.on("error", reject);
  });
}

export interface Deployment {
  dir: string;
  coordinator: Proc;
  port: number;
  httpPort: number;
  address: string;
  hostEnv: Record<string, string>;
  guestEnv: Record<string, string>;
  /** The coordinator's arguments after --listen/--http, reused by restartCoordinator. */
  coordinatorArgs: string[];
  audit(): { event: string; [k: string]: unknown }[];
}

/** ca + coordinator + host enrolment + guest trust: the quickstart up to `share`. */
export async function deploy(extraCoordinatorArgs: string[] = []): Promise<Deployment> {
  const dir = tmpDir();
  const ca = await run(["ca", "--coordinator-name", "localhost", "--dir", "pki"], {}, dir);
  if (ca.code !== 0) throw new Error(`ca failed: ${ca.err}`);
  const coordinatorArgs = ["--certs", "pki", "--audit", "audit.jsonl", "--db", "tessera.db", ...extraCoordinatorArgs];
  const coordinator = spawn(
    ["coordinator", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", ...coordinatorArgs],
    {},
    { cwd: dir },
  );
  const m = await coordinator.waitFor(/listening on 127\.0\.0\.1:(\d+) \(https? 127\.0\.0\.1:(\d+)\)/);
  const port = Number(m[1]);
  const address = `localhost:${port}`;
  const hostEnv = { TESSERA_HOME: path.join(dir, "host") };
  const guestEnv = { TESSERA_HOME: path.join(dir, "guest") };
  const token = fs.readFileSync(path.join(dir, "pki/enroll-token"), "utf8").trim();
  const link = await run(["link", address, "--token", token, "--name", "hosty"], hostEnv, dir);
  if (link.code !== 0) throw new Error(`host link failed: ${link.err}`);
  const glink = await run(["link", address, "--ca-file", "pki/ca.crt"], guestEnv, dir);
  if (glink.code !== 0) throw new Error(`guest link failed: ${glink.err}`);
  return {
    dir,
    coordinator,
    port,
    httpPort: Number(m[2]),
    address,
    hostEnv,
    guestEnv,
    coordinatorArgs,
    audit: () =>
      fs
        .readFileSync(path.join(dir, "audit.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l)),
  };
}

/** Starts `tessera share --port` (through a PTY when asked) and returns it with its code. */
export async function share(d: Deployment, targetPort: number, pty = false): Promise<{ host: Proc; code: string }> {
  const host = spawn(["share", "--port", String(targetPort)], d.hostEnv, { pty, cwd: d.dir });
  const m = await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m);
  return { host, code: m[1]! };
}

/** A guest joins with `code`, the host types y at its prompt, and the guest's local port is returned. */
export async function joinApproved(
  d: Deployment,
  host: Proc,
  code: string,
  name: string,
  extra: string[] = [],
): Promise<{ guest: Proc; local: number }> {
  const guest = spawn(["join", code, "--name", name, "--local", "127.0.0.1:0", ...extra], d.guestEnv);
  await host.waitFor(new RegExp(`Allow ${name} `));
  host.write("y\n");
  return { guest, local: Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]) };
}

/** Stops the coordinator (SIGTERM: clean; SIGKILL: a crash) and starts it again on the same port and state. */
export async function restartCoordinator(d: Deployment, signal: NodeJS.Signals): Promise<void> {
  d.coordinator.kill(signal);
  await d.coordinator.exit();
  d.coordinator = spawn(
    ["coordinator", "--listen", `127.0.0.1:${d.port}`, "--http", "127.0.0.1:0", ...d.coordinatorArgs],
    {},
    { cwd: d.dir },
  );
  const m = await d.coordinator.waitFor(/listening on 127\.0\.0\.1:(\d+) \(https? 127\.0\.0\.1:(\d+)\)/);
  d.httpPort = Number(m[2]);
}

/** Starts any program (psql, ssh, sshd) as a tracked process, killed by killAll like tessera's own. */
export function spawnProgram(argv: string[], env: Record<string, string> = {}, opts: { cwd?: string } = {}): Proc {
  const proc = Bun.spawn(argv, {
    env: { ...process.env, ...env },
    cwd: opts.cwd,
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  const p = new Proc(proc, false);
  live.add(proc);
  void proc.exited.then(() => live.delete(proc));
  void pump(proc.stdout as ReadableStream<Uint8Array>, (s) => p.feed("out", s));
  void pump(proc.stderr as ReadableStream<Uint8Array>, (s) => p.feed("err", s));
  return p;
}

/** Waits until the audit log holds `count` lines of `event` (it is written just after the action it records). */
export async function auditEvents(
  d: Deployment,
  event: string,
  count = 1,
  timeoutMs = 20_000,
): Promise<{ event: string; [k: string]: unknown }[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = d.audit().filter((e) => e.event === event);
    if (found.length >= count) return found;
    if (Date.now() > deadline)
      throw new Error(
        `audit log has ${found.length} ${event} line(s), expected ${count}:\n${JSON.stringify(d.audit(), null, 1)}`,
      );
    await Bun.sleep(25);
  }
}

/** `tessera agent --share-id ID --allow 127.0.0.1:PORT ...agentArgs` plus `tessera share --share-id ID` answering its prompts. */
export async function agentShare(
  d: Deployment,
  shareId: string,
  targetPort: number,
  agentArgs: string[] = [],
): Promise<{ agent: Proc; approver: Proc }> {
  const agent = spawn(["agent", "--share-id", shareId, "--allow", `127.0.0.1:${targetPort}`, ...agentArgs], d.hostEnv);
  await agent.waitFor(new RegExp(`serving share ${shareId}`));
  const approver = spawn(["share", "--share-id", shareId], d.hostEnv);
  await approver.waitFor(/code: /);
  return { agent, approver };
}

/** Starts `tessera share --shell ...extra` (through a PTY unless told otherwise) and returns it with its code. */
export async function shareShell(
  d: Deployment,
  extra: string[],
  opts: { pty?: boolean; env?: Record<string, string> } = {},
): Promise<{ host: Proc; code: string }> {
  const host = spawn(
    ["share", "--shell", ...extra],
    { ...d.hostEnv, ...opts.env },
    { pty: opts.pty ?? true, cwd: d.dir },
  );
  const m = await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m);
  return { host, code: m[1]! };
}
