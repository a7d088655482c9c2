// The operator's view end to end against a real coordinator: `tessera admin` lists live sessions with
// their byte counts and the enrolled hosts, removes a host (its stream cut at once, its agent refused for
// good), mints enrolment tokens; re-validation ends sessions whose agent stays away; errors name the fix.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { SQL } from "bun";
import {
  agentShare,
  auditEvents,
  deploy,
  echoServer,
  joinApproved,
  killAll,
  roundTrip,
  run,
  share,
  spawn,
  type Deployment,
} from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

/** An operator's TESSERA_HOME holding the deployment's operator token, and the coordinator's loopback HTTP URL. */
async function operator(d: Deployment): Promise<{ env: Record<string, string>; url: string }> {
  const env = { TESSERA_HOME: path.join(d.dir, "operator") };
  expect((await run(["token", fs.readFileSync(path.join(d.dir, "pki/operator-token"), "utf8").trim()], env)).code).toBe(
    0,
  );
  return { env, url: `http://127.0.0.1:${d.httpPort}` };
}

async function admin(
  op: { env: Record<string, string>; url: string },
  ...args: string[]
): Promise<{ code: number; out: string; err: string }> {
  return run(["admin", ...args, "--url", op.url], op.env);
}

type Row = { id: string; guest: string; bytesUp: number; bytesDown: number; streams: { live: number; total: number } };

test("admin sessions lists two live sessions with their byte counts (--json parses, the table fits 80 columns); admin revoke ends one", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const alice = await joinApproved(d, host, code, "alice");
  host.write("c\n");
  const code2 = (await host.waitFor(/code: [\s\S]*code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
  const bob = await joinApproved(d, host, code2, "bob");
  const [big, small] = [randomBytes(300_000), randomBytes(20_000)];
  expect((await roundTrip(alice.local, big)).equals(big)).toBe(true);
  expect((await roundTrip(bob.local, small)).equals(small)).toBe(true);
  const closes = await auditEvents(d, "stream.close", 2);
  const op = await operator(d);

  const listed = await admin(op, "sessions", "--json");
  expect(listed.err).toBe("");
  const rows = (JSON.parse(listed.out) as { sessions: Row[] }).sessions;
  expect(rows.map((r) => r.guest).sort()).toEqual(["alice", "bob"]);
  for (const r of rows) {
    // What the operator sees is what the audit log recorded for the session's streams (ciphertext each way).
    const mine = closes.filter((c) => c.sessionId === r.id);
    expect(mine).toHaveLength(1);
    expect([r.bytesUp, r.bytesDown, r.streams]).toEqual([
      Number(mine[0]!.bytesUp),
      Number(mine[0]!.bytesDown),
      { live: 0, total: 1 },
    ]);
    // Ciphertext on the relay (TLS included); the payload exactly on the direct path (the agent's count).
    expect(r.bytesUp).toBeGreaterThanOrEqual(r.guest === "alice" ? big.length : small.length);
  }

  const table = await admin(op, "sessions");
  const lines = table.out.trimEnd().split("\n");
  for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
  expect(lines[0]).toMatch(/^SESSION\s+HOST\s+GUEST\s+TARGET\s+AGE\s+IDLE\s+STATE$/);
  for (const r of rows) expect(table.out).toContain(r.id);
  expect(table.out).toMatch(/hosty\s+alice/);

  const hosts = JSON.parse((await admin(op, "hosts", "--json")).out) as {
    hosts: { name: string; connections: number; shares: { sessions: number }[] }[];
  };
  expect(hosts.hosts.map((h) => [h.name, h.connections > 0, h.shares.map((s) => s.sessions)])).toEqual([
    ["hosty", true, [2]],
  ]);
  for (const l of (await admin(op, "hosts")).out.trimEnd().split("\n")) expect(l.length).toBeLessThanOrEqual(80);

  const bobId = rows.find((r) => r.guest === "bob")!.id;
  expect((await admin(op, "revoke", bobId)).out).toContain(`revoked ${bobId}`);
  await bob.guest.waitFor(/revoked by the operator/);
  expect(
    (JSON.parse((await admin(op, "sessions", "--json")).out) as { sessions: Row[] }).sessions.map((r) => r.guest),
  ).toEqual(["alice"]);
  for (const p of [alice.guest, host]) p.kill("SIGINT");
  await Promise.all([alice.guest.exit(), host.exit(), bob.guest.exit()]);
});

test("admin hosts remove cuts a live stream at once; the host's terminal says why and its agent cannot reconnect; admin enroll-token enrols hosts again", async () => {
  // The periodic check is a minute away: whatever ends here ends because of the removal itself.
  const d = await deploy(["--revalidate-interval", "60s"]);
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { guest, local } = await joinApproved(d, host, code, "alice");
  const sock = net.connect({ port: local, host: "127.0.0.1" });
  sock.on("error", () => {});
  sock.write("still here?");
  await new Promise((r) => sock.once("data", r));
  const closed = new Promise<number>((r) => sock.once("close", () => r(performance.now())));
  const op = await operator(d);

  const started = performance.now();
  const removed = await admin(op, "hosts", "remove", "hosty");
  expect(removed.err).toBe("");
  expect(removed.out).toContain('removed host "hosty"');
  expect(removed.out).toContain("1 share(s) closed, 1 session(s) ended");
  const cutAt = await closed;
  const [rm] = await auditEvents(d, "host.remove");
  const [streamClose] = await auditEvents(d, "stream.close");
  console.log(
    `stream cut ${Math.round(cutAt - started)} ms after \`admin hosts remove\` started (CLI start-up included); audit: host.remove ${rm!.ts} -> stream.close ${streamClose!.ts}`,
  );
  expect(rm).toMatchObject({
    host: "hosty",
    by: "operator",
    operator: expect.stringContaining("@"),
    addr: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
  });
  expect(streamClose!.reason).toBe("the host was removed by the operator");
  expect((await auditEvents(d, "session.close"))[0]).toMatchObject({
    reason: "the host was removed by the operator",
    condition: "host_removed",
  });

  // The host's terminal says what happened and what to do; the share gives up instead of retrying.
  await host.waitFor(/this host was removed by the operator; enrol it again with a new token/);
  expect(await host.exit()).toBe(1);
  // It gave up on the refusal itself: not one reconnect attempt.
  expect(host.all).not.toContain("reconnecting");
  await guest.waitFor(/session ended: the host was removed by the operator/);
  expect(await guest.exit()).toBe(1);
  // Nor can it come back: refused at once, with the exit status the agent's systemd unit does not restart on.
  const again = await run(["agent", "--share-id", "back", "--allow", `127.0.0.1:${echo.port}`], d.hostEnv);
  expect(again.code).toBe(78);
  expect(again.err).toContain("this host was removed by the operator");
  expect(JSON.parse((await admin(op, "hosts", "--json")).out).hosts).toEqual([]);
  const all = JSON.parse((await admin(op, "hosts", "--json", "--all")).out).hosts;
  expect(all.map((h: { name: string; removedBy: string }) => [h.name, h.removedBy])).toEqual([
    ["hosty", expect.stringMatching(/^operator .+@.+ from 127\.0\.0\.1:\d+$/)],
  ]);

  // A token from `admin enroll-token` enrols this machine again (a fresh key) and, another, a second host.
  const mint = async () => {
    const r = await admin(op, "enroll-token", "--ttl", "1h");
    expect(r.code).toBe(0);
    expect(r.err).toContain("single use");
    return r.out.trim();
  };
  const t1 = await mint();
  expect((await run(["link", d.address, "--token", t1, "--name", "hosty"], d.hostEnv, d.dir)).code).toBe(0);
  const second = { TESSERA_HOME: path.join(d.dir, "second") };
  const t2 = await mint();
  // From a file, not argv (issue 27): no warning, so stderr stays empty.
  fs.writeFileSync(path.join(d.dir, "t2"), t2, { mode: 0o600 });
  const linked = await run(["link", d.address, "--token-file", "t2", "--name", "second"], second, d.dir);
  expect(linked.err).toBe("");
  expect(linked.out).toContain('enrolled as host "second"');
  const reuse = await run(
    ["link", d.address, "--token", t2, "--name", "third"],
    { TESSERA_HOME: path.join(d.dir, "third") },
    d.dir,
  );
  expect(reuse.code).toBe(1);
  expect(reuse.err).toContain("already used");
  const agent = spawn(["agent", "--share-id", "two", "--allow", `127.0.0.1:${echo.port}`], second);
  await agent.waitFor(/serving share two/);
  const enrolled = JSON.parse((await admin(op, "hosts", "--json")).out).hosts as {
    name: string;
    connections: number;
  }[];
  expect(enrolled.map((h) => [h.name, h.connections])).toEqual([
    ["hosty", 0],
    ["second", 1],
  ]);
  // Only the tokens' ids reach the audit log; the secrets are nowhere on the coordinator's disk.
  expect((await auditEvents(d, "enrol.token", 2)).map((e) => e.tokenId)).toEqual([t1.split(".")[1], t2.split(".")[1]]);
  for (const f of ["audit.jsonl", "tessera.db", "tessera.db-wal"]) {
    const file = path.join(d.dir, f);
    if (fs.existsSync(file))
      for (const t of [t1, t2]) expect(fs.readFileSync(file).includes(t.split(".")[2]!)).toBe(false);
  }
  // A `tessera agent` service whose host is removed stops for good, saying why (status 78: not restarted).
  expect((await admin(op, "hosts", "remove", "second")).code).toBe(0);
  await agent.waitFor(/giving up: this host was removed by the operator/);
  expect(await agent.exit()).toBe(78);
});

test("re-validation enforces a removal another node wrote to the shared database: the session ends, the host is refused", async () => {
  const d = await deploy(["--revalidate-interval", "200ms"]);
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { guest } = await joinApproved(d, host, code, "dora");
  // Another coordinator node on the same database records the removal; this node hears of it only through the store.
  const db = new SQL(`sqlite://${path.join(d.dir, "tessera.db")}`);
  await db`PRAGMA busy_timeout = 5000`;
  await db`UPDATE hosts SET removed_at = ${Date.now()}, removed_by = 'operator on node b' WHERE name = 'hosty'`;
  await db.close();
  await guest.waitFor(/session ended: the host was removed by the operator/);
  await host.waitFor(/this host was removed by the operator/);
  expect(await host.exit()).toBe(1);
  expect(await guest.exit()).toBe(1);
  expect((await auditEvents(d, "session.close"))[0]).toMatchObject({ guest: "dora", condition: "host_removed" });
});

test("re-validation ends a session whose agent stays away past the grace; the guest's and the host's terminals say why", async () => {
  const d = await deploy(["--resume-grace", "1s"]);
  const echo = await echoServer();
  const { agent, approver } = await agentShare(d, "db1", echo.port, ["--allow-requests-by-id"]);
  const guest = spawn(
    ["connect", "--share-id", "db1", "--target", `127.0.0.1:${echo.port}`, "--name", "carol", "--local", "127.0.0.1:0"],
    d.guestEnv,
  );
  await approver.waitFor(/Allow carol/);
  approver.write("y\n");
  await guest.waitFor(/forwarding 127\.0\.0\.1:\d+/);
  agent.kill("SIGKILL");
  await agent.exit();
  await guest.waitFor(/session ended: the host's agent disconnected/);
  await approver.waitFor(/ended: the host's agent disconnected/);
  expect(await guest.exit()).toBe(1);
  const events = d.audit();
  expect(events.find((e) => e.event === "session.close")).toMatchObject({
    guest: "carol",
    reason: "the host's agent disconnected",
    condition: "agent_away",
  });
  expect(events.findIndex((e) => e.event === "share.away")).toBeLessThan(
    events.findIndex((e) => e.event === "session.close"),
  );
  approver.kill("SIGINT");
  await approver.exit();
});

test("operator errors name the fix: no token here, wrong token (401), plain HTTP to another machine, wrong scheme, unreachable, no token configured (403)", async () => {
  const d = await deploy();
  const env = { TESSERA_HOME: path.join(d.dir, "operator") };
  const url = `http://127.0.0.1:${d.httpPort}`;
  const fails = async (args: string[]) => {
    const r = await run(["admin", ...args], env);
    expect(r.code).toBe(1);
    expect(r.err.trim().split("\n")).toHaveLength(1);
    return r.err;
  };
  expect(await fails(["sessions", "--url", url])).toContain(
    "no operator token on this machine: run `tessera token HEX` first",
  );
  expect((await run(["token", "ab".repeat(32)], env)).code).toBe(0);
  expect(await fails(["sessions", "--url", url])).toContain("refused the operator token (401)");
  // Refused before anything is sent (the name is never even looked up).
  expect(await fails(["hosts", "--url", "http://coordinator.example:8080"])).toContain(
    "refusing to send the operator token over plain HTTP to coordinator.example:8080",
  );
  expect(await fails(["sessions", "--url", `https://127.0.0.1:${d.httpPort}`])).toContain("does not speak HTTPS there");
  const closedPort = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  expect(await fails(["sessions", "--url", `http://127.0.0.1:${closedPort}`])).toContain(
    "connection refused (is the coordinator running, with --http on this address?)",
  );

  d.coordinator.kill("SIGTERM");
  await d.coordinator.exit();
  fs.rmSync(path.join(d.dir, "pki/operator-token"));
  // This time over HTTPS (the operator trusts the deployment's CA, as `link` would set up): plain HTTP to it says to use https.
  const c = spawn(
    [
      "coordinator",
      "--certs",
      "pki",
      "--listen",
      "127.0.0.1:0",
      "--http",
      "127.0.0.1:0",
      "--db",
      "tessera.db",
      "--http-cert",
      "pki/coordinator.crt",
      "--http-key",
      "pki/coordinator.key",
    ],
    {},
    { cwd: d.dir },
  );
  const http = Number((await c.waitFor(/https 127\.0\.0\.1:(\d+)/))[1]);
  fs.copyFileSync(path.join(d.dir, "pki/ca.crt"), path.join(env.TESSERA_HOME, "ca.crt"));
  expect(await fails(["sessions", "--url", `http://127.0.0.1:${http}`])).toContain(
    "it may serve HTTPS there: use --url https://",
  );
  expect(await fails(["enroll-token", "--url", `https://localhost:${http}`])).toContain(
    "has no operator token configured (403): create operator-token in its --certs directory",
  );
});
