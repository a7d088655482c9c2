// Three coordinator nodes on one PostgreSQL behind HAProxy: a host on one node and guests on others move
// byte-exact data; a code is single-use across nodes; a revoke sent anywhere cuts the stream where it is
// spliced; the node holding the agent is SIGKILLed and the agent and the guest come back through HAProxy.
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { PG, PgDatabases } from "../pg.ts";
import { echoServer, killAll, roundTrip, run, spawn, spawnProgram, tmpDir, type Proc } from "./harness.ts";
import { eventually } from "../coordinator/live.ts";

afterEach(killAll);

const HAPROXY = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].find((p) => fs.existsSync(p));
if (!PG) console.warn("scale-out.test: TESSERA_TEST_PG_URL is not set: SKIPPED (scripts/test-services.sh sets it)");
if (!HAPROXY) console.warn("scale-out.test: haproxy is not installed: SKIPPED (scripts/test-services.sh installs it)");
const dbs = new PgDatabases("tessera_scale");
afterAll(() => dbs.dropAll());
const freshDb = () => dbs.fresh();

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface Node {
  name: string;
  port: number;
  http: number;
  proc: Proc;
  audit: string;
}

function startNode(dir: string, db: string, name: string, port: number, http: number): Node {
  const audit = path.join(dir, `audit-${name}.jsonl`);
  const proc = spawn(
    [
      "coordinator",
      "--certs",
      "pki",
      "--db",
      db,
      "--node",
      name,
      "--advertise",
      `127.0.0.1:${port}`,
      "--node-ttl",
      "2s",
      "--listen",
      `127.0.0.1:${port}`,
      "--http",
      `127.0.0.1:${http}`,
      "--audit",
      audit,
      "--resume-grace",
      "60s",
    ],
    {},
    { cwd: dir },
  );
  return { name, port, http, proc, audit };
}

function events(n: Node, event: string): Record<string, unknown>[] {
  if (!fs.existsSync(n.audit)) return [];
  return fs
    .readFileSync(n.audit, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .filter((e) => e.event === event);
}

async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const v = await f();
    if (v !== undefined && v !== false) return v as T;
    await Bun.sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Retries a round trip while a stream may still be refused (an agent re-registering after a node loss). */
async function echoes(local: number, payload: Buffer): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    const got = await roundTrip(local, payload).catch(() => undefined);
    if (got?.equals(payload)) return true;
    await Bun.sleep(200);
  }
  return false;
}

async function linked(dir: string, name: string, address: string, token?: string): Promise<Record<string, string>> {
  const env = { TESSERA_HOME: path.join(dir, name) };
  const r = await run(
    token ? ["link", address, "--token", token, "--name", name] : ["link", address, "--ca-file", "pki/ca.crt"],
    env,
    dir,
  );
  if (r.code !== 0) throw new Error(`link ${name} failed: ${r.err}`);
  return env;
}

async function join(
  env: Record<string, string>,
  host: Proc,
  code: string,
  name: string,
  extra: string[] = [],
): Promise<{ guest: Proc; local: number }> {
  const guest = spawn(["join", code, "--name", name, "--local", "127.0.0.1:0", ...extra], env);
  await host.waitFor(new RegExp(`Allow ${name} `));
  host.write("y\n");
  return { guest, local: Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]) };
}

test("--node needs PostgreSQL: with SQLite the coordinator says it stays a single node", async () => {
  const dir = tmpDir();
  expect((await run(["ca", "--coordinator-name", "localhost", "--dir", "pki"], {}, dir)).code).toBe(0);
  const r = await run(
    [
      "coordinator",
      "--certs",
      "pki",
      "--db",
      "state.db",
      "--node",
      "n1",
      "--advertise",
      "127.0.0.1:9443",
      "--listen",
      "127.0.0.1:0",
      "--http",
      "127.0.0.1:0",
    ],
    {},
    dir,
  );
  expect(r.code).not.toBe(0);
  expect(r.err).toMatch(
    /--node needs a PostgreSQL database shared by all nodes \(--db postgres:\/\/\.\.\.\); with SQLite \(--db state\.db\) the coordinator runs as a single node: drop --node/,
  );
  expect(fs.existsSync(path.join(dir, "state.db"))).toBe(false);
});

describe.skipIf(!PG)("nodes without a balancer", () => {
  test("a code-guessing address has one budget for the whole deployment, not one per node", async () => {
    const dir = tmpDir();
    expect((await run(["ca", "--coordinator-name", "localhost", "--dir", "pki"], {}, dir)).code).toBe(0);
    const db = await freshDb();
    const ports = await Promise.all([1, 2, 3, 4].map(() => freePort()));
    const nodes = [1, 2].map((i) => startNode(dir, db, `n${i}`, ports[i - 1]!, ports[i + 1]!));
    await Promise.all(nodes.map((n) => n.proc.waitFor(/listening on/)));
    const envs = await Promise.all(nodes.map((n) => linked(dir, `g-${n.name}`, `localhost:${n.port}`)));
    const answers: string[] = [];
    // The budget is counted per clock minute (in PostgreSQL): guesses that straddle a minute's end
    // start a fresh budget halfway. Start with at least half a minute left, so all 14 fall in one.
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 30_000) await Bun.sleep(left + 100);
    // 10 a minute per address (the default): 14 guesses spread over two nodes must meet the limit.
    for (let i = 0; i < 14; i++) {
      const g = spawn(["join", "ZZZZ-ZZZZ", "--name", "guesser", "--local", "127.0.0.1:0"], envs[i % 2]!);
      await g.exit();
      answers.push(
        /too many attempts/.test(g.err) ? "limited" : /this code is not valid/.test(g.err) ? "invalid" : g.err,
      );
    }
    expect(answers.filter((a) => a === "invalid").length).toBe(10);
    expect(answers.slice(10)).toEqual(["limited", "limited", "limited", "limited"]);
  }, 60_000);
});

describe.skipIf(!PG || !HAPROXY)("three nodes behind HAProxy", () => {
  test("cross-node data, single-use codes, revoke anywhere, SIGKILL of the agent's node", async () => {
    const dir = tmpDir();
    expect((await run(["ca", "--coordinator-name", "localhost", "--dir", "pki"], {}, dir)).code).toBe(0);
    const db = await freshDb();
    const ports = await Promise.all([1, 2, 3, 4, 5, 6, 7].map(() => freePort()));
    // All three start at once: the schema is migrated once, under the advisory lock.
    const nodes = [1, 2, 3].map((i) => startNode(dir, db, `n${i}`, ports[i - 1]!, ports[i + 2]!));
    await Promise.all(nodes.map((n) => n.proc.waitFor(/listening on/)));
    const ha = ports[6]!;
    fs.writeFileSync(
      path.join(dir, "haproxy.cfg"),
      [
        "global",
        "  maxconn 1000",
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
        ...nodes.map((n) => `  server ${n.name} 127.0.0.1:${n.port} check inter 300ms fall 1 rise 2`),
        "",
      ].join("\n"),
    );
    const haproxy = spawnProgram([HAPROXY!, "-db", "-f", path.join(dir, "haproxy.cfg")]);
    await until(
      "haproxy to listen",
      () =>
        new Promise<boolean>((r) => {
          const s = net.connect(ha, "127.0.0.1", () => {
            s.destroy();
            r(true);
          });
          s.on("error", () => r(false));
        }),
    );
    expect(haproxy.proc.exitCode).toBeNull();

    const token = fs.readFileSync(path.join(dir, "pki/enroll-token"), "utf8").trim();
    const hostEnv = await linked(dir, "hosty", `localhost:${nodes[0]!.port}`, token);
    const guest2Env = await linked(dir, "g2", `localhost:${nodes[1]!.port}`);
    const guest3Env = await linked(dir, "g3", `localhost:${nodes[2]!.port}`);
    const guestHaEnv = await linked(dir, "gha", `localhost:${ha}`);

    // A host on node 1, a guest on node 2 (on the relay): the session's channel is one splice of ciphertext
    // on node 1, its connection from the guest forwarded by node 2.
    const echo = await echoServer();
    const host = spawn(["share", "--port", String(echo.port)], hostEnv, { cwd: dir });
    const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]!;
    const ann = await join(guest2Env, host, code, "ann", ["--relay-only"]);
    const payload = randomBytes(300_000);
    expect((await roundTrip(ann.local, payload)).equals(payload)).toBe(true);
    expect(events(nodes[0]!, "session.open").length).toBe(1);
    // Each node's /metrics names it; node 1 splices the channel (its stream's bytes crossed it), node 2 only forwards it.
    const scrape = async (n: Node) => await (await fetch(`http://127.0.0.1:${n.http}/metrics`)).text();
    expect(await scrape(nodes[0]!)).toMatch(/^tessera_sessions_active\{node="n1"\} 1$/m);
    expect(await scrape(nodes[1]!)).toMatch(/^tessera_sessions_active\{node="n2"\} 0$/m);
    expect(await scrape(nodes[0]!)).toMatch(/^tessera_channels_open\{node="n1"\} 1$/m);
    await eventually(async () => {
      const m = /^tessera_relayed_bytes_total\{[^}]*direction="guest_to_agent"[^}]*\} (\d+)$/m.exec(
        await scrape(nodes[0]!),
      );
      if (Number(m?.[1]) !== payload.length) throw new Error(`relayed ${m?.[1]}`);
    }, "the stream's bytes counted at node 1's splice");

    // The same code on node 3: refused (the claim in PostgreSQL is atomic and single).
    const again = spawn(["join", code, "--name", "eve", "--local", "127.0.0.1:0"], guest3Env);
    expect(await again.exit()).not.toBe(0);
    expect(again.err).toMatch(/this code is not valid/);

    // Through HAProxy: the guest lands on whichever node, and still reaches the host on node 1.
    host.write("c\n");
    const code2 = (await host.waitFor(/code: [0-9A-Z-]+\s[\s\S]*code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
    const bob = await join(guestHaEnv, host, code2, "bob");
    const p2 = randomBytes(200_000);
    expect((await roundTrip(bob.local, p2)).equals(p2)).toBe(true);

    // A revoke sent to node 3 cuts ann's open stream, spliced on node 1.
    const annSession = String(events(nodes[0]!, "session.open").find((e) => e.guest === "ann")!.sessionId);
    const stream = net.connect(ann.local, "127.0.0.1");
    const closed = new Promise<number>((r) => stream.on("close", () => r(Date.now())));
    stream.on("error", () => {});
    stream.write("hold");
    await new Promise<void>((r) => stream.once("data", () => r()));
    const opToken = fs.readFileSync(path.join(dir, "pki/operator-token"), "utf8").trim();
    const sent = Date.now();
    const res = await fetch(`http://127.0.0.1:${nodes[2]!.http}/s/${annSession}/revoke`, {
      method: "POST",
      headers: { authorization: `Bearer ${opToken}` },
    });
    expect(res.status).toBe(200);
    const cutAt = await closed;
    console.log(`scale-out: revoke on node 3 cut the stream on node 1 after ${cutAt - sent} ms`);
    await ann.guest.waitFor(/revoked by the operator/);
    expect(events(nodes[0]!, "revoke").length).toBe(1);

    // A second share whose agent comes in through HAProxy, and its guest too; then the node holding
    // the agent is killed outright.
    const firstShare = String(events(nodes[0]!, "share.open")[0]!.shareId);
    const hostB = spawn(
      ["share", "--port", String(echo.port)],
      { ...hostEnv, TESSERA_COORDINATOR: `localhost:${ha}` },
      { cwd: dir },
    );
    const code3 = (await hostB.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]!;
    const holder = await until("the node holding the second share", () =>
      nodes.find((n) => events(n, "share.open").some((e) => e.shareId !== firstShare)),
    );
    const cid = await join(guestHaEnv, hostB, code3, "cid");
    const p3 = randomBytes(100_000);
    expect((await roundTrip(cid.local, p3)).equals(p3)).toBe(true);
    holder.proc.kill("SIGKILL");
    await holder.proc.exit();
    await hostB.waitFor(/reconnected to the coordinator/);
    const adopted = await until("another node to adopt the share", () =>
      nodes.find((n) => n !== holder && events(n, "share.adopt").length > 0),
    );
    await cid.guest.waitFor(/resumed/);
    const p4 = randomBytes(150_000);
    expect(await echoes(cid.local, p4)).toBe(true);
    expect(cid.guest.proc.exitCode).toBeNull();
    console.log(`scale-out: killed ${holder.name}; ${adopted.name} took the share over`);

    // Every node's audit log verifies, the killed one's included: all of them in one call, one chain each.
    const files = nodes.map((n) => n.audit);
    const r = await run(["audit", "verify", ...files, "--cert", path.join(dir, "pki/coordinator.crt")]);
    expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: "" });
    expect(r.out).toContain(`overall: ok, all ${files.length} chains verify`);
  }, 120_000);
});
