// Issue 20 end to end, continued: the idle clock sees direct traffic, bursts and node streams go direct,
// and `share --direct-listen` lets a guest the agent cannot reach dial the host (with its own fallback).
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import net from "node:net";
import { randomBytes } from "node:crypto";
import type { Hint } from "../../src/wire/hints.ts";
import { auditEvents, deploy, echoServer, killAll, roundTrip } from "./harness.ts";
import { eventually } from "../coordinator/live.ts";
import { countingServers, guestInProcess, joinWith, relayedBytes, shareWith } from "./direct-helpers.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

/** The session's first channel may come through the relay (asked for before the probe was through); waits for the direct one. */
function directChannel(g: { paths: string[] }): Promise<void> {
  return eventually(async () => {
    if (g.paths.at(-1) !== "direct") throw new Error(`paths ${g.paths}`);
  }, "the direct channel");
}

test("the idle clock sees direct traffic (the agent reports it), and a direct session with none still idles out", async () => {
  const d = await deploy(["--idle-timeout", "3s"]);
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const { guest, local } = await joinWith(d, host, code, "max");
  expect((await auditEvents(d, "direct.probe"))[0]!.ok).toBe(true);
  await guest.waitFor(/path: direct to the host/);
  const sock = net.connect({ port: local, host: "127.0.0.1" });
  sock.on("error", () => {});
  // Traffic for twice the idle limit, one echo at a time, on one direct stream the coordinator never sees.
  const until = Date.now() + 6_000;
  const cut = new Promise<never>((_, reject) =>
    sock.once("close", () =>
      reject(new Error(`the stream was cut while busy: ${JSON.stringify(d.audit().slice(-2))}`)),
    ),
  );
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
  await guest.waitFor(/path: direct to the host/);
  const payloads = Array.from({ length: 150 }, (_, i) => randomBytes(1000 + i));
  const echoed = await Promise.all(payloads.map((p) => roundTrip(local, p)));
  for (const [i, e] of echoed.entries()) expect(e.equals(payloads[i]!)).toBe(true);
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
  await directChannel(g);
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
  expect(g.paths.at(-1)).toBe("direct");
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
  await directChannel(g);
  const before = await relayedBytes(d);
  const payloads = [randomBytes(2_000_000), randomBytes(10)];
  for (const p of payloads) expect((await roundTrip(g.local, p)).equals(p)).toBe(true);
  const closes = await auditEvents(d, "stream.close", 2);
  expect(
    d
      .audit()
      .filter((e) => e.event === "stream.open")
      .map((e) => e.path),
  ).toEqual(["direct", "direct"]);
  expect(closes.map((e) => e.bytesUp).sort()).toEqual(payloads.map((p) => p.length).sort());
  expect(await relayedBytes(d)).toBe(before);
  expect(g.errors).toEqual([]);
  expect(g.paths.at(-1)).toBe("direct");
  await g.guest.close();
});

test("without --direct-listen the agent listens on nothing and offers no hints", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const g = await guestInProcess(d, host, code, "quin", []);
  await auditEvents(d, "direct.probe");
  expect(
    d
      .audit()
      .filter((e) => e.event === "direct.hints")
      .map((e) => e.from),
  ).toEqual(["guest"]);
  expect(host.all).not.toContain("listening for guests");
  const p = randomBytes(1000);
  expect((await roundTrip(g.local, p)).equals(p)).toBe(true);
  expect(d.audit().find((e) => e.event === "stream.open")!.path).toBe("relay");
  await g.guest.close();
});

test("share --direct-listen: when the guest's dial of the host fails, its channel falls back to the relay unseen", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port, ["--direct-listen"]);
  const g = await guestInProcess(d, host, code, "rex", []);
  await auditEvents(d, "direct.probe", 2);
  await directChannel(g);
  const a = randomBytes(20_000);
  expect((await roundTrip(g.local, a)).equals(a)).toBe(true);
  // The host's proven address stops working (a network change: point the guest at a port nothing listens
  // on), and the channel's connection breaks: the next channel is dialled there, fails, and takes the relay.
  const dead = await countingServers(1);
  dead.close();
  const inside = g.guest as unknown as {
    directListener: { hostAddr: Hint };
    link: { current?: { inner: { terminate(): void } } };
  };
  inside.directListener.hostAddr = { host: "127.0.0.1", port: dead.ports[0]! };
  inside.link.current!.inner.terminate();
  const b = randomBytes(20_000);
  expect((await roundTrip(g.local, b)).equals(b)).toBe(true);
  const c = randomBytes(20_000);
  expect((await roundTrip(g.local, c)).equals(c)).toBe(true);
  expect((await auditEvents(d, "stream.fallback"))[0]!.reason).toContain("127.0.0.1");
  expect(
    d
      .audit()
      .filter((e) => e.event === "stream.open")
      .map((e) => e.path),
  ).toEqual(["direct", "relay", "relay"]);
  expect(g.errors).toEqual([]);
  expect(g.paths.slice(g.paths.indexOf("direct"))).toEqual(["direct", "relay"]);
  await g.guest.close();
});

test("a guest reachable only over IPv6 gets the direct path: its hint is dialled, and the stream is byte-exact with nothing relayed", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  // ::1 stands for an IPv6 address of the guest's (loopback is allowed as everyone is on this machine).
  const g = await guestInProcess(d, host, code, "v6", (port) => [{ host: "::1", port }]);
  expect((await auditEvents(d, "direct.probe"))[0]).toMatchObject({ by: "host", ok: true, dialled: 1 });
  await host.waitFor(/direct path to the guest at \[::1\]:\d+/);
  await directChannel(g);
  const before = await relayedBytes(d);
  const p = randomBytes(500_000);
  expect((await roundTrip(g.local, p)).equals(p)).toBe(true);
  expect((await auditEvents(d, "stream.close"))[0]).toMatchObject({ bytesUp: p.length });
  expect(d.audit().find((e) => e.event === "stream.open")!.path).toBe("direct");
  expect(await relayedBytes(d)).toBe(before);
  expect(g.errors).toEqual([]);
  await g.guest.close();
});

test("a session ended while a direct stream is live: the stream's and the session's close lines carry the agent's final counts", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const { guest, local } = await joinWith(d, host, code, "fin", ["--pool", "0"]);
  await guest.waitFor(/path: direct to the host/);
  const sock = net.connect({ port: local, host: "127.0.0.1" });
  sock.on("error", () => {});
  const payload = randomBytes(50_000);
  let got = 0;
  const echoed = new Promise<void>((r) => sock.on("data", (c: Buffer) => (got += c.length) >= payload.length && r()));
  sock.write(payload);
  await echoed;
  // Still open, and no periodic report yet (they come every 10 s at the default idle limit): only the
  // agent's word after the session's end can say what it carried.
  guest.kill("SIGINT");
  await guest.exit();
  const [open] = await auditEvents(d, "stream.open");
  expect(open!.path).toBe("direct");
  const [close] = await auditEvents(d, "stream.close");
  expect([close!.bytesUp, close!.bytesDown]).toEqual([payload.length, payload.length]);
  expect((await auditEvents(d, "session.close"))[0]).toMatchObject({
    bytesUp: payload.length,
    bytesDown: payload.length,
  });
  sock.destroy();
  host.kill("SIGINT");
  await host.exit();
});
