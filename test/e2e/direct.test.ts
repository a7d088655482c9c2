// Issue 20 end to end on loopback: the direct path carries a session's streams byte-exact without the
// coordinator relaying them, a hint that fails falls back unseen, a coordinator cannot inject a hint,
// revoke still cuts direct streams, --relay-only keeps everything on the relay, and hints are capped.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { MAX_HINTS_DIALLED } from "../../src/host/hint-check.ts";
import { localHints } from "../../src/wire/hints.ts";
import { auditEvents, deploy, echoServer, killAll, roundTrip, run, spawn, type Deployment } from "./harness.ts";
import { eventually } from "../coordinator/live.ts";
import { countingServers, guestInProcess, joinWith, metric, relayedBytes, shareWith } from "./direct-helpers.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

test("a session whose hints work moves byte-exact data on the direct path, and the coordinator relays none of it", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const { guest, local } = await joinWith(d, host, code, "dora");
  // The agent proved the guest's hint (TLS with the pinned keys) before streams are opened.
  const probe = (await auditEvents(d, "direct.probe"))[0]!;
  // Whichever of the guest's addresses answers first wins (loopback, or this machine's own address when
  // it is quicker under load): either way one of the addresses the guest offered.
  const won = (await host.waitFor(/direct path to the guest at \[?([\da-f:.]+?)\]?:\d+\n/))[1]!;
  expect(localHints(0, true).map((h) => h.host)).toContain(won);
  expect(probe).toMatchObject({ ok: true, refused: 0, over: 0 });
  // join says so once the probe succeeded (its spares made through the relay give way to direct ones).
  await guest.waitFor(/path: direct to the host/);
  const before = await relayedBytes(d);
  const payloads = [randomBytes(3_000_000), randomBytes(1), randomBytes(65_536)];
  for (const p of payloads) expect((await roundTrip(local, p)).equals(p)).toBe(true);
  // The host's live view (plain lines without a terminal) shows the path too.
  await host.waitFor(/#1 \S+ dora -> 127\.0\.0\.1:\d+: 3 streams, .*, direct to the guest\n/);
  // Every stream went direct, and its close line has the agent's byte counts.
  const closes = await auditEvents(d, "stream.close", payloads.length);
  const opens = d.audit().filter((e) => e.event === "stream.open");
  expect(opens.map((e) => e.path)).toEqual(["direct", "direct", "direct"]);
  expect(closes.map((e) => e.bytesUp).sort()).toEqual(payloads.map((p) => p.length).sort());
  expect(closes.map((e) => e.bytesDown).sort()).toEqual(payloads.map((p) => p.length).sort());
  expect(await relayedBytes(d)).toBe(before);
  const text = await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text();
  expect(metric(text, 'tessera_streams_path_total{path="direct"}')).toBe(3);
  expect(metric(text, 'tessera_streams_path_total{path="relay"}')).toBe(0);
  expect(guest.err).not.toMatch(/WARN|ERROR|failed/i);
});

test("hints that fail (nothing listening, a listener that is not the guest) leave the session on the relay, with no error seen", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const notGuest = await countingServers(1);
  const dead = await countingServers(1);
  const deadPort = dead.ports[0]!;
  dead.close();
  const g = await guestInProcess(d, host, code, "fay", [
    { host: "127.0.0.1", port: deadPort },
    { host: "127.0.0.1", port: notGuest.ports[0]! },
  ]);
  const probe = (await auditEvents(d, "direct.probe"))[0]!;
  expect(probe).toMatchObject({ ok: false, offered: 2, dialled: 2 });
  const p = randomBytes(200_000);
  expect((await roundTrip(g.local, p)).equals(p)).toBe(true);
  expect(d.audit().find((e) => e.event === "stream.open")!.path).toBe("relay");
  expect(g.errors).toEqual([]);
  expect(g.paths).toEqual(["relay"]);
  await g.guest.close();
  notGuest.close();
});

test("a direct channel broken mid-session: the next one falls back to the relay unseen, later streams stay there", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const g = await guestInProcess(d, host, code, "gil");
  expect((await auditEvents(d, "direct.probe"))[0]!.ok).toBe(true);
  // The session's first channel may come through the relay (asked for before the probe was through); the
  // direct one replaces it once the agent proved the path.
  await eventually(async () => {
    if (!g.paths.includes("direct")) throw new Error(`paths ${g.paths}`);
  }, "the direct channel");
  const a = randomBytes(50_000);
  expect((await roundTrip(g.local, a)).equals(a)).toBe(true);
  // A network change: the guest's direct listener goes away and its channel's connection breaks. The
  // channel is asked for again (no new yes); the agent's direct dial fails, so it comes through the relay.
  const inside = g.guest as unknown as {
    directListener: { acceptor: { server: { stop(b: boolean): void } } };
    link: { current?: { inner: { terminate(): void } } };
  };
  inside.directListener.acceptor.server.stop(true);
  inside.link.current!.inner.terminate();
  const b = randomBytes(50_000);
  expect((await roundTrip(g.local, b)).equals(b)).toBe(true);
  const c = randomBytes(50_000);
  expect((await roundTrip(g.local, c)).equals(c)).toBe(true);
  const fallback = (await auditEvents(d, "stream.fallback"))[0]!;
  const opens = d.audit().filter((e) => e.event === "stream.open");
  expect(opens.map((e) => e.path)).toEqual(["direct", "relay", "relay"]);
  // The fallback was the channel's (a channel is no stream in the log: its id is not a stream's).
  expect(opens.map((e) => e.streamId)).not.toContain(fallback.streamId);
  expect(g.errors).toEqual([]);
  expect(g.paths.slice(g.paths.indexOf("direct"))).toEqual(["direct", "relay"]);
  await g.guest.close();
});

test("a coordinator that injects a hint (test-only switch) gets nothing dialled", async () => {
  const trap = await countingServers(1);
  process.env.TESSERA_TEST_INJECT_HINT = `127.0.0.1:${trap.ports[0]}`;
  process.env.TESSERA_TEST_MODE = "1";
  let d: Deployment;
  try {
    d = await deploy();
  } finally {
    delete process.env.TESSERA_TEST_INJECT_HINT;
    delete process.env.TESSERA_TEST_MODE;
  }
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const { guest, local } = await joinWith(d, host, code, "hal");
  const probe = (await auditEvents(d, "direct.probe"))[0]!;
  expect(probe.ok).toBe(false);
  expect(probe.dialled).toBe(0);
  expect(String(probe.reason)).toContain("signature does not verify");
  expect((await auditEvents(d, "direct.hints"))[0]!.injected).toBe(true);
  await host.waitFor(/refused the direct-path hints/);
  const p = randomBytes(10_000);
  expect((await roundTrip(local, p)).equals(p)).toBe(true);
  expect(d.audit().find((e) => e.event === "stream.open")!.path).toBe("relay");
  expect(trap.accepted()).toBe(0);
  guest.kill("SIGINT");
  await guest.exit();
  trap.close();
});

test("the injection switch is refused outside test mode", async () => {
  const d = await deploy();
  const r = spawn(
    [
      "coordinator",
      "--listen",
      "127.0.0.1:0",
      "--http",
      "127.0.0.1:0",
      "--certs",
      "pki",
      "--audit",
      "a2.jsonl",
      "--db",
      "t2.db",
    ],
    { TESSERA_TEST_INJECT_HINT: "127.0.0.1:1" },
    { cwd: d.dir },
  );
  expect(await r.exit()).not.toBe(0);
  expect(r.err).toContain("test-only switch");
});

test("revoke cuts a live direct stream, and the audit log has the revoke and the stream's close", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const { guest, local } = await joinWith(d, host, code, "ida");
  expect((await auditEvents(d, "direct.probe"))[0]!.ok).toBe(true);
  const sock = net.connect({ port: local, host: "127.0.0.1" });
  sock.on("error", () => {});
  sock.write("still here?");
  await new Promise((r) => sock.once("data", r));
  expect(d.audit().find((e) => e.event === "stream.open")!.path).toBe("direct");
  const closed = new Promise((r) => sock.once("close", r));
  const sessionId = d.audit().find((e) => e.event === "session.open")!.sessionId as string;
  const opEnv = { TESSERA_HOME: path.join(d.dir, "operator"), TESSERA_COORDINATOR: d.address };
  expect(
    (await run(["token", fs.readFileSync(path.join(d.dir, "pki/operator-token"), "utf8").trim()], opEnv)).code,
  ).toBe(0);
  expect((await run(["revoke", sessionId, "--url", `http://127.0.0.1:${d.httpPort}`], opEnv)).code).toBe(0);
  // The stream ends (the agent and the guest each cut it on "closed"), with no traffic needed to notice.
  await closed;
  expect(await guest.exit()).toBe(1);
  const events = (await auditEvents(d, "session.close")).length && d.audit().map((e) => e.event);
  expect(events).toContain("revoke");
  expect(events).toContain("stream.close");
});

test("--relay-only on share, or on join, keeps every stream on the relay", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const s1 = await shareWith(d, echo.port, ["--relay-only"]);
  const j1 = await joinWith(d, s1.host, s1.code, "jo");
  const probe = (await auditEvents(d, "direct.probe"))[0]!;
  expect(probe).toMatchObject({ ok: false, dialled: 0 });
  expect(String(probe.reason)).toContain("--relay-only");
  const before = await relayedBytes(d);
  const p = randomBytes(100_000);
  expect((await roundTrip(j1.local, p)).equals(p)).toBe(true);
  await j1.guest.waitFor(/path: through the coordinator/);
  // The relayed-bytes counter grows when the coordinator ends the stream.
  await auditEvents(d, "stream.close");
  expect(await relayedBytes(d)).toBeGreaterThan(before + p.length);

  const s2 = await shareWith(d, echo.port);
  const j2 = await joinWith(d, s2.host, s2.code, "kit", ["--relay-only"]);
  expect((await roundTrip(j2.local, p)).equals(p)).toBe(true);
  await j2.guest.waitFor(/path: through the coordinator/);
  // The guest offered nothing: no hints line for its session.
  const sid2 = d.audit().filter((e) => e.event === "session.open")[1]!.sessionId;
  expect(d.audit().filter((e) => e.event === "direct.hints" && e.sessionId === sid2)).toEqual([]);
  expect(
    d
      .audit()
      .filter((e) => e.event === "stream.open")
      .map((e) => e.path),
  ).toEqual(["relay", "relay"]);
});

test("a guest offering 1,000 hints, some forbidden, gets at most the cap dialled, and the audit line says so", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const counting = await countingServers(20);
  const forbidden = [
    { host: "169.254.169.254", port: 80 },
    { host: "224.0.0.1", port: 80 },
    { host: "0.0.0.0", port: counting.ports[0]! },
  ];
  const hints = [
    ...forbidden,
    ...Array.from({ length: 997 }, (_, i) => ({ host: "127.0.0.1", port: counting.ports[i % 20]! })),
  ];
  const g = await guestInProcess(d, host, code, "lea", hints);
  const probe = (await auditEvents(d, "direct.probe"))[0]!;
  expect(probe).toMatchObject({
    ok: false,
    offered: 1000,
    dialled: MAX_HINTS_DIALLED,
    refused: 3,
    over: 997 - MAX_HINTS_DIALLED,
  });
  expect(counting.accepted()).toBeLessThanOrEqual(MAX_HINTS_DIALLED);
  await host.waitFor(/3 hint\(s\) refused by the deny list/);
  // The session works, on the relay.
  const p = randomBytes(1000);
  expect((await roundTrip(g.local, p)).equals(p)).toBe(true);
  await g.guest.close();
  counting.close();
});
