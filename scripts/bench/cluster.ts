// A deployment of N coordinator nodes on one PostgreSQL behind a private HAProxy, all on loopback, with
// `pairs` host/guest pairs linked through the balancer: what the multi-node benchmark measures.
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { SQL } from "bun";
import { freePort, ROOT } from "./paths.ts";
import { run, spawn, type Proc } from "./procs.ts";
import { setupTimes } from "./client.ts";

const TESSERA = path.join(ROOT, "dist/tessera");
export const HAPROXY = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].find((p) => fs.existsSync(p));

async function listening(port: number, who: Proc, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        r(true);
      });
      s.on("error", () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline || who.p.exitCode !== null)
      throw new Error(`${who.name} never listened on ${port}:\n${who.out}`);
    await Bun.sleep(50);
  }
}

/** PostgreSQL: the one in TESSERA_TEST_PG_URL, or a private one in a temporary directory, stopped (by its pid file) at the end. */
export async function postgres(): Promise<{ url: string; stop(): Promise<void> }> {
  if (process.env.TESSERA_TEST_PG_URL) return { url: process.env.TESSERA_TEST_PG_URL, stop: async () => {} };
  const bin = fs.existsSync("/usr/lib/postgresql")
    ? fs
        .readdirSync("/usr/lib/postgresql")
        .sort((a, b) => Number(a) - Number(b))
        .map((v) => `/usr/lib/postgresql/${v}/bin`)
        .at(-1)
    : undefined;
  if (!bin) throw new Error("no PostgreSQL server (apt-get install postgresql), and TESSERA_TEST_PG_URL is not set");
  // Its own temporary directory: the benchmark's is private to this user, and the server may run as another.
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-bench-pg-"));
  // PostgreSQL refuses to run as root: as root, run it as the cluster's own 'postgres' user.
  const root = process.getuid?.() === 0;
  const as = root ? ["runuser", "-u", "postgres", "--"] : [];
  const user = root ? "postgres" : (await run("id -un", ["id", "-un"])).trim();
  if (root) await run("chown", ["chown", "postgres", d]);
  await run("initdb", [...as, `${bin}/initdb`, "-D", `${d}/data`, "-U", user, "--auth=trust", "-E", "UTF8"]);
  const port = await freePort();
  await run("pg_ctl start", [
    ...as,
    `${bin}/pg_ctl`,
    "-D",
    `${d}/data`,
    "-l",
    `${d}/server.log`,
    "-w",
    "-o",
    `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${d} -c fsync=off -c max_connections=200`,
    "start",
  ]);
  // pg_ctl stop signals the postmaster by the pid in its pid file.
  return {
    url: `postgres://${user}@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await run("pg_ctl stop", [...as, `${bin}/pg_ctl`, "-D", `${d}/data`, "-m", "immediate", "stop"]).catch(() => {});
      fs.rmSync(d, { recursive: true, force: true });
    },
  };
}

export interface Cluster {
  nodes: Proc[];
  haproxy: Proc;
  /** Each guest's local forwarding port (a `join` through the balancer to a `share` of the target). */
  locals: number[];
  all(): Proc[];
  stop(): Promise<void>;
}

/** `n` nodes on a fresh database of `pgUrl`, HAProxy before them, and `pairs` shares joined through it. */
export async function cluster(
  pgUrl: string,
  dir: string,
  n: number,
  pairs: number,
  targetPort: number,
): Promise<Cluster> {
  if (!fs.existsSync(TESSERA)) throw new Error(`${TESSERA} is missing: run \`bun run build\` first`);
  if (!HAPROXY) throw new Error("haproxy is not installed (apt-get install haproxy)");
  const d = path.join(dir, `nodes-${n}`);
  fs.mkdirSync(d);
  const dbName = `tessera_bench_${n}_${process.pid}_${Date.now()}`;
  const admin = new SQL(pgUrl);
  await admin.unsafe(`CREATE DATABASE ${dbName}`);
  const u = new URL(pgUrl);
  u.pathname = `/${dbName}`;
  await run("tessera ca", [TESSERA, "ca", "--coordinator-name", "localhost", "--dir", "pki"], { cwd: d });
  const ports = await Promise.all(Array.from({ length: n + 1 }, () => freePort()));
  const nodes = ports
    .slice(0, n)
    .map((port, i) =>
      spawn(
        `node n${i + 1}`,
        [
          TESSERA,
          "coordinator",
          "--certs",
          "pki",
          "--db",
          u.toString(),
          "--node",
          `n${i + 1}`,
          "--advertise",
          `127.0.0.1:${port}`,
          "--listen",
          `127.0.0.1:${port}`,
          "--http",
          "127.0.0.1:0",
          "--audit",
          `audit-n${i + 1}.jsonl`,
        ],
        { cwd: d },
      ),
    );
  await Promise.all(nodes.map((p) => p.waitFor(/listening on/)));
  const ha = ports[n]!;
  fs.writeFileSync(
    path.join(d, "haproxy.cfg"),
    [
      "global",
      "  maxconn 4000",
      "defaults",
      "  mode tcp",
      "  timeout connect 2s",
      "  timeout client 1h",
      "  timeout server 1h",
      "  retries 3",
      "  option redispatch",
      "frontend tessera",
      `  bind 127.0.0.1:${ha}`,
      "  default_backend nodes",
      "backend nodes",
      "  balance roundrobin",
      ...ports.slice(0, n).map((p, i) => `  server n${i + 1} 127.0.0.1:${p} check inter 1s fall 2 rise 2`),
      "",
    ].join("\n"),
  );
  const haproxy = spawn("haproxy", [HAPROXY, "-db", "-f", path.join(d, "haproxy.cfg")]);
  await listening(ha, haproxy);
  const address = `localhost:${ha}`;
  const token = fs.readFileSync(path.join(d, "pki/enroll-token"), "utf8").trim();
  const procs: Proc[] = [];
  const locals: number[] = [];
  // One host (the enrolment token is single-use) sharing the target `pairs` times, each share joined by its own guest.
  const hostEnv = { TESSERA_HOME: path.join(d, "host") };
  const guestEnv = { TESSERA_HOME: path.join(d, "guest") };
  await run("tessera link (host)", [TESSERA, "link", address, "--token", token, "--name", "bench-host"], {
    cwd: d,
    env: hostEnv,
  });
  await run("tessera link (guest)", [TESSERA, "link", address, "--ca-file", "pki/ca.crt"], { cwd: d, env: guestEnv });
  for (let i = 0; i < pairs; i++) {
    const host = spawn(`share ${i}`, [TESSERA, "share", "--port", String(targetPort)], { cwd: d, env: hostEnv });
    const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})$/m))[1]!;
    const guest = spawn(
      `join ${i}`,
      [TESSERA, "join", code, "--name", `bench-guest-${i}`, "--reason", "benchmark", "--local", "127.0.0.1:0"],
      { cwd: d, env: guestEnv },
    );
    await host.waitFor(/Allow bench-guest-\d+ .*\[y\/N\]/).catch((e: Error) => {
      throw new Error(`${e.message}\n--- ${guest.name}:\n${guest.out}`);
    });
    host.write("y\n");
    const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
    await setupTimes(local, 1).catch((e: Error) => {
      throw new Error(
        `${e.message}: the first stream through pair ${i} failed\n${[...nodes, haproxy, ...procs, host, guest].map((p) => `--- ${p.name}:\n${p.out.split("\n").slice(-12).join("\n")}`).join("\n")}`,
      );
    });
    procs.push(host, guest);
    locals.push(local);
  }
  return {
    nodes,
    haproxy,
    locals,
    all: () => [...nodes, haproxy, ...procs],
    stop: async () => {
      for (const p of [...procs, haproxy, ...nodes]) await p.stop();
      await admin.unsafe(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
      await admin.close();
    },
  };
}
