// The paths a guest could use to reach the host's service, each set up on loopback: direct (the
// machine's limit), ssh -L through a private sshd, tessera through the coordinator (the relay, with
// --relay-only) and tessera-direct (the session's channel straight from the agent to the guest). With
// bench.ts --before BIN, `before` and `before-direct` are the same two set up with another tessera binary.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { descendants, run, spawn, type Proc } from "./procs.ts";
import { setupTimes } from "./client.ts";

export interface Path {
  name: "direct" | "ssh" | TesseraPath;
  /** Where the client connects. */
  port: number;
  /** The processes that make up the path (role and pid), read when RSS is reported. */
  processes(): { role: string; pid: number }[];
  stop(): Promise<void>;
  /** Extra facts worth printing (ssh cipher, versions). */
  info: Record<string, string>;
}

/** The paths through tessera: this build's relay and direct path, and another binary's (--before). */
export const TESSERA_PATHS = ["tessera", "tessera-direct", "before", "before-direct"] as const;
export type TesseraPath = (typeof TESSERA_PATHS)[number];
/** Short names for ratio columns. */
export const SHORT: Record<TesseraPath, string> = {
  tessera: "relay",
  "tessera-direct": "t-direct",
  before: "before",
  "before-direct": "b-direct",
};
/** Each of this build's paths and the other binary's path it is compared with. */
export const BEFORE_OF = { tessera: "before", "tessera-direct": "before-direct" } as const;

export const ROOT = path.resolve(import.meta.dir, "../..");
const DEFAULT_BIN = path.join(ROOT, "dist/tessera");

/** A free loopback port (asked of the kernel, then released for the child to bind). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Proves a forward is really up: by default one echo round trip with the bench's own target. */
export type Probe = (port: number) => Promise<unknown>;
const echoProbe: Probe = (port) => setupTimes(port, 1);

/** Polls until `probe` succeeds through `port` (a forward that is really up). */
async function untilForwarding(port: number, who: Proc, probe: Probe = echoProbe, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await probe(port);
      return;
    } catch (err) {
      if (Date.now() > deadline || who.p.exitCode !== null)
        throw new Error(`${who.name} never forwarded: ${err}\n${who.out}`);
      await Bun.sleep(100);
    }
  }
}

export async function startTarget(): Promise<{ port: number; proc: Proc }> {
  const proc = spawn("target", ["bun", path.join(import.meta.dir, "target.ts")]);
  const port = Number((await proc.waitFor(/port (\d+)/))[1]);
  return { port, proc };
}

export async function direct(target: { port: number; proc: Proc }, via: Leg = noDelay): Promise<Path> {
  return {
    name: "direct",
    port: await via("client -> target", target.port),
    processes: () => [],
    stop: async () => {},
    info: {},
  };
}

/** A Leg that puts a forwarder adding `delayMs` each way (its own process, killed by pid) on every hop. */
export function delayedLegs(delayMs: number, procs: Proc[]): Leg {
  return async (leg, port) => {
    const p = spawn(`delay (${leg})`, [
      "bun",
      path.join(import.meta.dir, "delay.ts"),
      "--to",
      String(port),
      "--delay",
      String(delayMs),
    ]);
    procs.push(p);
    return Number((await p.waitFor(/port (\d+)/))[1]);
  };
}

/**
 * Where a client reaches a server across the link: by default the server's own port; the delayed-link
 * path puts a fixed-delay forwarder there (delay.ts) and returns its port. `leg` names the hop.
 */
export type Leg = (leg: string, serverPort: number) => Promise<number>;
const noDelay: Leg = async (_leg, port) => port;

export async function ssh(targetPort: number, dir: string, via: Leg = noDelay, probe?: Probe): Promise<Path> {
  const d = fs.mkdtempSync(path.join(dir, "ssh-"));
  await run("ssh-keygen host", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path.join(d, "host_key")]);
  await run("ssh-keygen user", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path.join(d, "user_key")]);
  fs.copyFileSync(path.join(d, "user_key.pub"), path.join(d, "authorized_keys"));
  // os.userInfo() can say "unknown" under Bun; ask the system.
  const user = (await run("id -un", ["id", "-un"])).trim();
  const root = process.getuid?.() === 0;
  // sshd's privilege separation needs this directory when it starts as root; it is all we create outside dir.
  if (root) fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const sshPort = await freePort();
  const config = [
    `Port ${sshPort}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${d}/host_key`,
    `PidFile ${d}/sshd.pid`,
    `AuthorizedKeysFile ${d}/authorized_keys`,
    "StrictModes no",
    "UsePAM no",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    `PermitRootLogin ${root ? "prohibit-password" : "no"}`,
    "AllowTcpForwarding yes",
    "X11Forwarding no",
    "PrintMotd no",
    `AllowUsers ${user}`,
    "LogLevel ERROR",
  ].join("\n");
  fs.writeFileSync(path.join(d, "sshd_config"), `${config}\n`);
  const sshd = spawn("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", path.join(d, "sshd_config")]);
  // sshd prints nothing when it is ready: wait until its port accepts.
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(sshPort, "127.0.0.1", () => {
        s.destroy();
        r(true);
      });
      s.on("error", () => r(false));
    });
    if (ok) break;
    if (i > 100 || sshd.p.exitCode !== null) throw new Error(`sshd did not start:\n${sshd.out}`);
    await Bun.sleep(50);
  }
  const localPort = await freePort();
  // -F /dev/null: the client's defaults (ciphers, MACs) as a user would get them, no personal config.
  const client = spawn("ssh", [
    "ssh",
    "-F",
    "/dev/null",
    "-N",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    `UserKnownHostsFile=${d}/known_hosts`,
    "-o",
    "ExitOnForwardFailure=yes",
    "-o",
    "LogLevel=ERROR",
    "-i",
    path.join(d, "user_key"),
    "-p",
    String(await via("ssh -> sshd", sshPort)),
    "-L",
    `127.0.0.1:${localPort}:127.0.0.1:${targetPort}`,
    `${user}@127.0.0.1`,
  ]);
  await untilForwarding(localPort, client, probe);
  const cipher =
    (await run("ssh -G", ["ssh", "-F", "/dev/null", "-G", "127.0.0.1"])).match(/^ciphers (\S+)/m)?.[1]?.split(",")[0] ??
    "?";
  return {
    name: "ssh",
    port: localPort,
    info: { cipher: `${cipher} (client default)`, version: (await run("ssh -V", ["ssh", "-V"])).trim() },
    processes: () => [
      { role: "ssh", pid: client.pid },
      { role: "sshd", pid: sshd.pid },
      ...descendants(sshd.pid).map((pid) => ({ role: "sshd session", pid })),
    ],
    stop: async () => {
      await client.stop();
      await sshd.stop();
    },
  };
}

export interface TesseraOptions {
  /** "relay" pins every stream to the coordinator (join --relay-only); "direct" (default path) waits until the session's streams go straight from the agent to the guest. */
  mode?: "relay" | "direct";
  /** Another tessera binary (bench.ts --before): the path is then named before / before-direct. */
  bin?: string;
  /** The long-running tessera processes write CPU profiles here when they exit. */
  profileDir?: string;
  via?: Leg;
  probe?: Probe;
}

/** The tessera paths `wanted` names: this build's, then `before`'s (another binary) when given. */
export async function tesseraPaths(
  targetPort: number,
  dir: string,
  wanted: Set<string>,
  before: string | undefined,
  o: Omit<TesseraOptions, "mode" | "bin"> = {},
): Promise<Path[]> {
  const out: Path[] = [];
  if (wanted.has("tessera")) out.push(await tessera(targetPort, dir, { ...o, mode: "relay" }));
  if (wanted.has("tessera-direct")) out.push(await tessera(targetPort, dir, { ...o, mode: "direct" }));
  if (before && wanted.has("before")) out.push(await tessera(targetPort, dir, { ...o, mode: "relay", bin: before }));
  if (before && wanted.has("before-direct"))
    out.push(await tessera(targetPort, dir, { ...o, mode: "direct", bin: before }));
  return out;
}

export async function tessera(targetPort: number, dir: string, o: TesseraOptions = {}): Promise<Path> {
  const { mode = "relay", via = noDelay, probe, profileDir } = o;
  const bin = o.bin ? path.resolve(o.bin) : DEFAULT_BIN;
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run \`bun run build\` first`);
  const d = fs.mkdtempSync(path.join(dir, "tessera-"));
  const prof: Record<string, string> = profileDir
    ? { BUN_OPTIONS: `--cpu-prof --cpu-prof-dir=${path.resolve(profileDir)}` }
    : {};
  const hostEnv = { TESSERA_HOME: path.join(d, "host"), ...prof };
  const guestEnv = { TESSERA_HOME: path.join(d, "guest"), ...prof };
  await run("tessera ca", [bin, "ca", "--coordinator-name", "localhost", "--dir", "pki"], { cwd: d });
  const coordinator = spawn(
    "coordinator",
    [
      bin,
      "coordinator",
      "--certs",
      "pki",
      "--listen",
      "127.0.0.1:0",
      "--http",
      "127.0.0.1:0",
      "--audit",
      "audit.jsonl",
      "--db",
      "tessera.db",
    ],
    { cwd: d, env: prof },
  );
  const port = Number((await coordinator.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  // The host's and the guest's own hops to the coordinator (control and data both go there).
  const hostAddress = `localhost:${await via("agent -> coordinator", port)}`;
  const guestAddress = `localhost:${await via("guest -> coordinator", port)}`;
  const token = fs.readFileSync(path.join(d, "pki/enroll-token"), "utf8").trim();
  await run("tessera link (host)", [bin, "link", hostAddress, "--token", token, "--name", "bench-host"], {
    cwd: d,
    env: hostEnv,
  });
  await run("tessera link (guest)", [bin, "link", guestAddress, "--ca-file", "pki/ca.crt"], {
    cwd: d,
    env: guestEnv,
  });
  const host = spawn("share", [bin, "share", "--port", String(targetPort)], { cwd: d, env: hostEnv });
  const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})$/m))[1]!;
  const guest = spawn(
    "join",
    [
      bin,
      "join",
      code,
      "--name",
      "bench-guest",
      "--reason",
      "benchmark",
      "--local",
      "127.0.0.1:0",
      ...(mode === "relay" ? ["--relay-only"] : []),
    ],
    { cwd: d, env: guestEnv },
  );
  // The host's consent goes through its real prompt, as a person would give it.
  await host.waitFor(/Allow bench-guest .*\[y\/N\]/);
  host.write("y\n");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  await untilForwarding(local, guest, probe);
  // The first streams may still go through the relay while the agent probes the guest's hints.
  for (let i = 0; mode === "direct" && !/path: direct to the host/.test(guest.out); i++) {
    if (i > 200) throw new Error(`tessera never took the direct path:\n${guest.out}\n${host.out}`);
    await untilForwarding(local, guest, probe);
    await Bun.sleep(50);
  }
  return {
    name: o.bin ? (mode === "direct" ? "before-direct" : "before") : mode === "direct" ? "tessera-direct" : "tessera",
    port: local,
    info: { version: (await run("tessera version", [bin, "--version"])).trim() },
    processes: () => [
      { role: "coordinator", pid: coordinator.pid },
      { role: "share (agent)", pid: host.pid },
      { role: "join (guest)", pid: guest.pid },
    ],
    stop: async () => {
      if (process.env.TESSERA_BENCH_DEBUG)
        for (const q of [coordinator, host, guest]) console.error(`--- ${q.name} output (tail)\n${q.out.slice(-4000)}`);
      await guest.stop();
      await host.stop();
      await coordinator.stop();
    },
  };
}

/** `tessera --help` from the compiled binary: wall time and CPU time (user + system; steadier on a busy machine), ms per run. */
export function helpTimes(n: number, bin = DEFAULT_BIN): { wallMs: number; cpuMs: number }[] {
  const out: { wallMs: number; cpuMs: number }[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = Bun.spawnSync([bin, "--help"], { stdout: "ignore", stderr: "ignore" });
    const wallMs = performance.now() - t0;
    if (r.exitCode !== 0) throw new Error(`tessera --help exited ${r.exitCode}`);
    out.push({ wallMs, cpuMs: Number(r.resourceUsage.cpuTime.total) / 1000 });
  }
  return out;
}
