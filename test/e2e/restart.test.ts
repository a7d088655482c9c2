// Coordinator restarts, clean and SIGKILL: hosts, shares, codes and approved sessions carry on;
// requests waiting for the host are denied with a reason; the audit chain stays whole.
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { PG, PgDatabases } from "../pg.ts";
import {
  deploy,
  echoServer,
  joinApproved,
  killAll,
  restartCoordinator,
  roundTrip,
  run,
  share,
  spawn,
  type Deployment,
} from "./harness.ts";

afterEach(killAll);

if (!PG) console.warn("restart.test: TESSERA_TEST_PG_URL is not set: the PostgreSQL runs of these tests are SKIPPED");
const pgDbs = new PgDatabases("tessera_e2e");
afterAll(() => pgDbs.dropAll());

/** --db for the backend: the default SQLite file, or a fresh PostgreSQL database. */
async function dbArgs(kind: "sqlite" | "postgres"): Promise<string[]> {
  return kind === "sqlite" ? [] : ["--db", await pgDbs.fresh()];
}

async function verifyChain(d: Deployment): Promise<string> {
  const r = await run([
    "audit",
    "verify",
    path.join(d.dir, "audit.jsonl"),
    "--cert",
    path.join(d.dir, "pki/coordinator.crt"),
  ]);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  return r.out;
}

for (const kind of ["sqlite", "postgres"] as const) {
  describe.skipIf(kind === "postgres" && !PG)(`coordinator restart (${kind})`, () => {
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      test(`${signal}: share, unused code and approved session survive; the guest resumes without a new yes`, async () => {
        const d = await deploy(["--resume-grace", "60s", ...(await dbArgs(kind))]);
        const echo = await echoServer();
        const { host, code } = await share(d, echo.port);
        const { guest, local } = await joinApproved(d, host, code, "ann");
        const before = randomBytes(50_000);
        expect((await roundTrip(local, before)).equals(before)).toBe(true);
        // A second code, minted before the restart and not yet used.
        host.write("c\n");
        const spare = (
          await host.waitFor(/code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?\n[\s\S]*code: ([0-9A-Z]{4}-[0-9A-Z]{4})/)
        )[2]!;
        // A third guest is waiting for the host's answer when the coordinator goes.
        host.write("c\n");
        const third = (await host.waitFor(/(?:code: [0-9A-Z-]+\s[\s\S]*){2}code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
        const waiting = spawn(["join", third, "--name", "cid", "--local", "127.0.0.1:0"], d.guestEnv);
        await host.waitFor(/Allow cid /);

        await restartCoordinator(d, signal);

        // The waiting guest hears why it was not let in; its code's check had run, so the code is not given back (issue 27).
        expect(await waiting.exit()).not.toBe(0);
        expect(waiting.err).toMatch(
          /access denied: the coordinator (restarted during the code check; the code is burnt|is shutting down)/,
        );
        // The host's share came back by itself, and the guest resumed its session.
        await host.waitFor(/reconnected to the coordinator/);
        await guest.waitFor(/session s-[\w-]+ resumed/);
        const after = randomBytes(70_000);
        let echoed: Buffer | undefined;
        for (let i = 0; i < 50 && !echoed; i++) {
          // The agent may still be re-registering: a refused stream closes at once, so retry briefly.
          echoed = await roundTrip(local, after).catch(() => undefined);
          if (!echoed?.equals(after)) {
            echoed = undefined;
            await Bun.sleep(200);
          }
        }
        expect(echoed?.equals(after)).toBe(true);
        expect(guest.proc.exitCode).toBeNull();

        // The code minted before the restart still works (and the host still has to say yes).
        const bob = await joinApproved(d, host, spare, "bob");
        const b = randomBytes(1000);
        expect((await roundTrip(bob.local, b)).equals(b)).toBe(true);

        const events = d.audit();
        const start = events.filter((e) => e.event === "coordinator.start").at(-1)!;
        expect(start).toMatchObject({ restoredShares: 1, restoredSessions: 1 });
        expect(events.some((e) => e.event === "session.resume" && e.guest === "ann" && e.afterRestart === true)).toBe(
          true,
        );
        expect(events.some((e) => e.event === "share.back")).toBe(true);
        expect(events.some((e) => e.event === "deny" && e.guest === "cid")).toBe(true);
        // Codes and tokens never reach the audit log.
        const text = JSON.stringify(events);
        for (const c of [code, spare, third]) expect(text).not.toContain(c);
        expect(await verifyChain(d)).toContain("ok:");

        // Ctrl-C on the host still ends everything at once.
        host.kill("SIGINT");
        expect(await host.exit()).toBe(0);
        await guest.waitFor(/session ended: the host stopped sharing/);
      }, 90_000);
    }
  });
}

test("SIGKILL during a burst of stream opens: the chain verifies and the session is restored", async () => {
  const d = await deploy(["--resume-grace", "60s"]);
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { guest, local } = await joinApproved(d, host, code, "ann");
  // Open streams as fast as possible, and kill the coordinator in the middle of it.
  let opened = 0;
  let stop = false;
  const burst = (async () => {
    while (!stop) {
      await new Promise<void>((resolve) => {
        const s = net.connect({ port: local, host: "127.0.0.1" }, () => {
          opened++;
          s.end("x");
        });
        s.on("error", () => resolve());
        s.on("close", () => resolve());
        s.resume();
      });
    }
  })();
  while (opened < 30) await Bun.sleep(20);
  d.coordinator.kill("SIGKILL");
  await d.coordinator.exit();
  stop = true;
  await burst;
  await verifyChain(d);
  await restartCoordinator(d, "SIGTERM");
  await guest.waitFor(/session s-[\w-]+ resumed after the coordinator restarted: new connections work/);
  await host.waitFor(/reconnected to the coordinator/);
  const out = await verifyChain(d);
  expect(out).toMatch(/ok: \d+ events/);
  const start = d
    .audit()
    .filter((e) => e.event === "coordinator.start")
    .at(-1)!;
  expect(start).toMatchObject({ restoredShares: 1, restoredSessions: 1 });
}, 90_000);

test("a session whose guest never comes back ends after the grace period", async () => {
  const d = await deploy(["--resume-grace", "2s"]);
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { guest } = await joinApproved(d, host, code, "ann");
  guest.kill("SIGKILL");
  await guest.exit();
  await host.waitFor(/ended: the guest disconnected/, 30_000);
  const events = d.audit();
  expect(events.some((e) => e.event === "session.detach")).toBe(true);
  expect(events.find((e) => e.event === "session.close")).toMatchObject({
    guest: "ann",
    reason: "the guest disconnected",
  });
}, 60_000);

test("a standalone agent and an approver-only share reconnect by themselves after a crash", async () => {
  const d = await deploy(["--resume-grace", "60s"]);
  const echo = await echoServer();
  const agent = spawn(["agent", "--share-id", "db1", "--allow", `127.0.0.1:${echo.port}`], d.hostEnv);
  await agent.waitFor(/serving share db1/);
  const approver = spawn(["share", "--share-id", "db1"], d.hostEnv);
  const code = (await approver.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})$/m))[1]!;
  const { guest, local } = await joinApproved(d, approver, code, "ann");
  const one = randomBytes(4000);
  expect((await roundTrip(local, one)).equals(one)).toBe(true);

  await restartCoordinator(d, "SIGKILL");

  await agent.waitFor(/lost the coordinator[\s\S]*reconnecting by itself, next try in/);
  await agent.waitFor(/serving share db1[\s\S]*serving share db1/);
  await approver.waitFor(/reconnected to the coordinator; approving again/);
  await guest.waitFor(/resumed/);
  const two = randomBytes(4000);
  let ok = false;
  for (let i = 0; i < 50 && !ok; i++) {
    ok = (await roundTrip(local, two).catch(() => Buffer.alloc(0))).equals(two);
    if (!ok) await Bun.sleep(200);
  }
  expect(ok).toBe(true);
  // The approver can still mint and approve after the reconnect.
  approver.write("c\n");
  const again = (await approver.waitFor(/code: [0-9A-Z-]+\n[\s\S]*code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
  const bob = await joinApproved(d, approver, again, "bob");
  const three = randomBytes(100);
  expect((await roundTrip(bob.local, three)).equals(three)).toBe(true);
  // The agent stopping on purpose closes the share and every session at once.
  agent.kill("SIGINT");
  expect(await agent.exit()).toBe(0);
  await guest.waitFor(/session ended: the host stopped sharing/);
  expect(d.audit().some((e) => e.event === "share.close" && e.reason === "the host stopped sharing")).toBe(true);
}, 90_000);

test("audit tail shows a table, raw JSON, and follows new events", async () => {
  const d = await deploy();
  const file = path.join(d.dir, "audit.jsonl");
  const table = await run(["audit", "tail", file, "-n", "5"]);
  expect(table.code).toBe(0);
  expect(table.out).toMatch(/^TIME\s+SEQ\s+EVENT\s+WHO/);
  expect(table.out).toMatch(/host\.enrol\s+host hosty/);
  const json = await run(["audit", "tail", file, "--json", "-n", "0"]);
  const lines = json.out
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(lines.map((l) => l.seq)).toEqual(d.audit().map((e) => e.seq));
  const follow = spawn(["audit", "tail", file, "--follow", "-n", "1"]);
  await follow.waitFor(/host\.enrol/);
  const echo = await echoServer();
  const { host } = await share(d, echo.port);
  await follow.waitFor(/share\.open\s+host hosty\s+sh-\w+\n[\s\S]*targets=127\.0\.0\.1:\d+/);
  await follow.waitFor(/code\.mint/);
  host.kill("SIGINT");
  await follow.waitFor(/share\.close/);
  follow.kill("SIGINT");
  expect(await follow.exit()).toBe(0);
}, 60_000);
