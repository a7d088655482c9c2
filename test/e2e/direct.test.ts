// Issue 20 end to end on loopback: the direct path carries a session's streams byte-exact without the
// coordinator relaying them, revoke still cuts them, and --relay-only keeps everything on the relay.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { randomBytes } from "node:crypto";
import "reflect-metadata";
import { Guest } from "../../src/guest/guest.ts";
import { MAX_HINTS_DIALLED } from "../../src/host/hint-check.ts";
import type { Hint } from "../../src/wire/hints.ts";
import { auditEvents, deploy, echoServer, killAll, roundTrip, run, spawn, type Deployment, type Proc } from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

/** `tessera share --port` with extra flags; returns it and its code. */
async function shareWith(d: Deployment, port: number, extra: string[] = []): Promise<{ host: Proc; code: string }> {
  const host = spawn(["share", "--port", String(port), ...extra], d.hostEnv, { cwd: d.dir });
  return { host, code: (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]! };
}

async function joinWith(d: Deployment, host: Proc, code: string, name: string, extra: string[] = []): Promise<{ guest: Proc; local: number }> {
  const guest = spawn(["join", code, "--name", name, "--local", "127.0.0.1:0", ...extra], d.guestEnv);
  await host.waitFor(new RegExp(`Allow ${name} `));
  host.write("y\n");
  return { guest, local: Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]) };
}

export async function relayedBytes(d: Deployment): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^tessera_relayed_bytes_total\{[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

export function metric(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(" ")[1]);
}

test("a session whose hints work moves byte-exact data on the direct path, and the coordinator relays none of it", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const { guest, local } = await joinWith(d, host, code, "dora");
  // The agent proved the guest's hint (TLS with the pinned keys) before streams are opened.
  const probe = (await auditEvents(d, "direct.probe"))[0]!;
  await host.waitFor(/direct path to the guest at 127\.0\.0\.1:\d+/);
  expect(probe).toMatchObject({ ok: true, refused: 0, over: 0 });
  const before = await relayedBytes(d);
  const payloads = [randomBytes(3_000_000), randomBytes(1), randomBytes(65_536)];
  for (const p of payloads) expect((await roundTrip(local, p)).equals(p)).toBe(true);
  await guest.waitFor(/path: direct to the host/);
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

/** A guest run in this process (so a test can choose its hints), against the real coordinator and share. */
async function guestInProcess(d: Deployment, host: Proc, code: string, name: string, hints?: Hint[]) {
  const caPem = fs.readFileSync(path.join(d.dir, "pki/ca.crt"), "utf8");
  const errors: string[] = [];
  const paths: string[] = [];
  const guest = await Guest.connect({ address: d.address, caPem, version: "test" }, { onStreamError: (m) => errors.push(m), onPath: (p) => paths.push(p) }, hints ? { hints: () => hints } : {});
  const approved = guest.request({ code, name, reason: "" });
  await host.waitFor(new RegExp(`Allow ${name} `));
  host.write("y\n");
  await approved;
  const { port } = await guest.listen("127.0.0.1", 0);
  return { guest, local: port, errors, paths };
}

/** TCP listeners that count connections and never answer (not the guest). */
async function countingServers(n: number): Promise<{ ports: number[]; accepted: () => number; close: () => void }> {
  let accepted = 0;
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<net.Server>((resolve) => {
    const s = net.createServer((c) => {
      accepted++;
      c.on("error", () => {});
    });
    s.listen(0, "127.0.0.1", () => resolve(s));
  })));
  return { ports: servers.map((s) => (s.address() as net.AddressInfo).port), accepted: () => accepted, close: () => servers.forEach((s) => s.close()) };
}

test("hints that fail (nothing listening, a listener that is not the guest) leave the session on the relay, with no error seen", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const notGuest = await countingServers(1);
  const dead = await countingServers(1);
  const deadPort = dead.ports[0]!;
  dead.close();
  const g = await guestInProcess(d, host, code, "fay", [{ host: "127.0.0.1", port: deadPort }, { host: "127.0.0.1", port: notGuest.ports[0]! }]);
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

test("a direct path that stops working mid-session: the next stream falls back to the relay unseen, later ones stay there", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const g = await guestInProcess(d, host, code, "gil");
  expect((await auditEvents(d, "direct.probe"))[0]!.ok).toBe(true);
  const a = randomBytes(50_000);
  expect((await roundTrip(g.local, a)).equals(a)).toBe(true);
  // The guest's direct listener goes away (a network change): the agent's dial for the next stream fails.
  (g.guest as unknown as { directListener: { acceptor: { server: { stop(b: boolean): void } } } }).directListener.acceptor.server.stop(true);
  const b = randomBytes(50_000);
  expect((await roundTrip(g.local, b)).equals(b)).toBe(true);
  const c = randomBytes(50_000);
  expect((await roundTrip(g.local, c)).equals(c)).toBe(true);
  const fallback = (await auditEvents(d, "stream.fallback"))[0]!;
  const opens = d.audit().filter((e) => e.event === "stream.open");
  expect(opens.map((e) => e.path)).toEqual(["direct", "direct", "relay"]);
  expect(fallback.streamId).toBe(opens[1]!.streamId);
  expect(g.errors).toEqual([]);
  expect(g.paths).toEqual(["direct", "relay"]);
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
  const r = spawn(["coordinator", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--certs", "pki", "--audit", "a2.jsonl", "--db", "t2.db"], { TESSERA_TEST_INJECT_HINT: "127.0.0.1:1" }, { cwd: d.dir });
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
  expect((await run(["token", fs.readFileSync(path.join(d.dir, "pki/operator-token"), "utf8").trim()], opEnv)).code).toBe(0);
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
  expect(d.audit().filter((e) => e.event === "stream.open").map((e) => e.path)).toEqual(["relay", "relay"]);
});

test("a guest offering 1,000 hints, some forbidden, gets at most the cap dialled, and the audit line says so", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const counting = await countingServers(20);
  const forbidden = [{ host: "169.254.169.254", port: 80 }, { host: "224.0.0.1", port: 80 }, { host: "0.0.0.0", port: counting.ports[0]! }];
  const hints = [...forbidden, ...Array.from({ length: 997 }, (_, i) => ({ host: "127.0.0.1", port: counting.ports[i % 20]! }))];
  const g = await guestInProcess(d, host, code, "lea", hints);
  const probe = (await auditEvents(d, "direct.probe"))[0]!;
  expect(probe).toMatchObject({ ok: false, offered: 1000, dialled: MAX_HINTS_DIALLED, refused: 3, over: 997 - MAX_HINTS_DIALLED });
  expect(counting.accepted()).toBeLessThanOrEqual(MAX_HINTS_DIALLED);
  await host.waitFor(/3 hint\(s\) refused by the deny list/);
  // The session works, on the relay.
  const p = randomBytes(1000);
  expect((await roundTrip(g.local, p)).equals(p)).toBe(true);
  await g.guest.close();
  counting.close();
});

test("the idle clock sees direct traffic (the agent reports it), and a direct session with none still idles out", async () => {
  const d = await deploy(["--idle-timeout", "3s"]);
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const { guest, local } = await joinWith(d, host, code, "max");
  expect((await auditEvents(d, "direct.probe"))[0]!.ok).toBe(true);
  const sock = net.connect({ port: local, host: "127.0.0.1" });
  sock.on("error", () => {});
  // Traffic for twice the idle limit, one echo at a time, on one direct stream the coordinator never sees.
  const until = Date.now() + 6_000;
  const cut = new Promise<never>((_, reject) => sock.once("close", () => reject(new Error(`the stream was cut while busy: ${JSON.stringify(d.audit().slice(-2))}`))));
  cut.catch(() => {});
  while (Date.now() < until) {
    sock.write("ping");
    await Promise.race([new Promise((r) => sock.once("data", r)), cut]);
    await Bun.sleep(200);
  }
  expect(d.audit().filter((e) => e.event === "session.idle")).toEqual([]);
  expect(d.audit().find((e) => e.event === "stream.open")!.path).toBe("direct");
  // Quiet now: the session ends for idleness, and the direct stream with it.
  const closed = new Promise((r) => sock.once("close", r));
  await auditEvents(d, "session.idle");
  await closed;
  expect(await guest.exit()).toBe(1);
});

test("a burst of 150 connections all get working direct streams", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const { guest, local } = await joinWith(d, host, code, "ned");
  expect((await auditEvents(d, "direct.probe"))[0]!.ok).toBe(true);
  const payloads = Array.from({ length: 150 }, (_, i) => randomBytes(1000 + i));
  const echoed = await Promise.all(payloads.map((p) => roundTrip(local, p)));
  echoed.forEach((e, i) => expect(e.equals(payloads[i]!)).toBe(true));
  const opens = d.audit().filter((e) => e.event === "stream.open");
  expect(opens.length).toBe(150);
  expect(opens.every((e) => e.path === "direct")).toBe(true);
  expect(d.audit().filter((e) => e.event === "stream.fallback")).toEqual([]);
  expect(guest.err).not.toMatch(/warning|error/i);
});

test("a stream handed over as a node stream (a shell's terminal, --stdio) takes the direct path too", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const g = await guestInProcess(d, host, code, "ora");
  expect((await auditEvents(d, "direct.probe"))[0]!.ok).toBe(true);
  const stream = await g.guest.openStream();
  const got = new Promise<string>((resolve) => {
    let text = "";
    stream.on("data", (b: Buffer) => {
      text += b.toString();
      if (text.length >= 5) resolve(text);
    });
  });
  stream.write("hello");
  expect(await got).toBe("hello");
  stream.end();
  const close = (await auditEvents(d, "stream.close"))[0]!;
  expect(d.audit().find((e) => e.event === "stream.open")!.path).toBe("direct");
  expect([close.bytesUp, close.bytesDown]).toEqual([5, 5]);
  expect(g.paths).toEqual(["direct"]);
  await g.guest.close();
});

test("share --direct-listen: a guest the agent cannot reach dials the host instead, byte-exact, with nothing relayed", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port, ["--direct-listen"]);
  // The guest offers no address of its own: only the host's listener can make the path direct.
  const g = await guestInProcess(d, host, code, "pia", []);
  const probes = await auditEvents(d, "direct.probe", 2);
  expect(probes.find((e) => e.by === "host")).toMatchObject({ ok: false, offered: 0 });
  expect(probes.find((e) => e.by === "guest")).toMatchObject({ ok: true, refused: 0 });
  expect(d.audit().find((e) => e.event === "direct.hints" && e.from === "host")).toBeDefined();
  await host.waitFor(/listening for guests' direct connections on port \d+/);
  const before = await relayedBytes(d);
  const payloads = [randomBytes(2_000_000), randomBytes(10)];
  for (const p of payloads) expect((await roundTrip(g.local, p)).equals(p)).toBe(true);
  const closes = await auditEvents(d, "stream.close", 2);
  expect(d.audit().filter((e) => e.event === "stream.open").map((e) => e.path)).toEqual(["direct", "direct"]);
  expect(closes.map((e) => e.bytesUp).sort()).toEqual(payloads.map((p) => p.length).sort());
  expect(await relayedBytes(d)).toBe(before);
  expect(g.errors).toEqual([]);
  expect(g.paths).toEqual(["direct"]);
  await g.guest.close();
});

test("without --direct-listen the agent listens on nothing and offers no hints", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const g = await guestInProcess(d, host, code, "quin", []);
  await auditEvents(d, "direct.probe");
  expect(d.audit().filter((e) => e.event === "direct.hints").map((e) => e.from)).toEqual(["guest"]);
  expect(host.all).not.toContain("listening for guests");
  const p = randomBytes(1000);
  expect((await roundTrip(g.local, p)).equals(p)).toBe(true);
  expect(d.audit().find((e) => e.event === "stream.open")!.path).toBe("relay");
  await g.guest.close();
});

test("share --direct-listen: when the guest's dial of the host fails, the stream falls back to the relay unseen", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port, ["--direct-listen"]);
  const g = await guestInProcess(d, host, code, "rex", []);
  await auditEvents(d, "direct.probe", 2);
  const a = randomBytes(20_000);
  expect((await roundTrip(g.local, a)).equals(a)).toBe(true);
  // The host's proven address stops working (a network change): point the guest at a port nothing listens on.
  const dead = await countingServers(1);
  dead.close();
  (g.guest as unknown as { directListener: { hostAddr: Hint } }).directListener.hostAddr = { host: "127.0.0.1", port: dead.ports[0]! };
  const b = randomBytes(20_000);
  expect((await roundTrip(g.local, b)).equals(b)).toBe(true);
  const c = randomBytes(20_000);
  expect((await roundTrip(g.local, c)).equals(c)).toBe(true);
  expect((await auditEvents(d, "stream.fallback"))[0]!.reason).toContain("127.0.0.1");
  expect(d.audit().filter((e) => e.event === "stream.open").map((e) => e.path)).toEqual(["direct", "direct", "relay"]);
  expect(g.errors).toEqual([]);
  expect(g.paths).toEqual(["direct", "relay"]);
  await g.guest.close();
});
