// The guest's stream pool end to end (join --pool): spares are paired and through their TLS before
// any local connection, yet reach nothing on the host and leave no audit line until used.
import { afterAll, expect, test } from "bun:test";
import net from "node:net";
import { deploy, joinApproved, killAll, roundTrip, share, type Deployment } from "./harness.ts";
import { eventually } from "../coordinator/live.ts";

afterAll(killAll);

/** An echo server that counts the connections it accepted: a spare must never be one of them. */
async function countingEcho(): Promise<{ port: number; accepted: () => number; close: () => void }> {
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, accepted: () => accepted, close: () => server.close() };
}

async function metric(d: Deployment, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in /metrics`);
  return Number(line.split(" ")[1]);
}

test("spares are ready before use, reach nothing and are not audited; each used one is audited once and carries exact bytes", async () => {
  const d = await deploy();
  const echo = await countingEcho();
  const { host, code } = await share(d, echo.port);
  // share checks once that its target listens: that one connection is not a stream's.
  const probe = echo.accepted();
  // On the relay: this test counts what the coordinator relays.
  const { guest, local } = await joinApproved(d, host, code, "pooler", ["--pool", "3", "--relay-only"]);
  await eventually(async () => {
    const n = await metric(d, "tessera_streams_pooled");
    if (n !== 3) throw new Error(`${n} pooled`);
  }, "three spares paired");
  expect(echo.accepted()).toBe(probe);
  expect(d.audit().some((e) => e.event === "stream.open")).toBe(false);
  expect(await metric(d, "tessera_streams_total")).toBe(0);

  for (let i = 0; i < 5; i++) {
    const payload = Buffer.alloc(100_000 + i, i + 1);
    expect((await roundTrip(local, payload)).equals(payload)).toBe(true);
  }
  expect(echo.accepted()).toBe(probe + 5);
  const opens = d.audit().filter((e) => e.event === "stream.open");
  expect(opens).toHaveLength(5);
  // Spares ran some of them, and each used spare says so in its line. (Not necessarily the first: the
  // coordinator counts a spare once it is paired, a moment before the guest's end of its TLS is through.)
  expect(opens.some((e) => e.pooled === true)).toBe(true);
  expect(await metric(d, "tessera_streams_total")).toBe(5);
  // The pool refills after use.
  await eventually(async () => {
    const n = await metric(d, "tessera_streams_pooled");
    if (n !== 3) throw new Error(`${n} pooled`);
  }, "the pool refilled");

  guest.kill("SIGINT");
  expect(await guest.exit()).toBe(0);
  await eventually(async () => {
    if (!d.audit().some((e) => e.event === "session.close")) throw new Error("no session.close yet");
  }, "the session's close");
  const audit = d.audit();
  const closes = audit.filter((e) => e.event === "stream.close");
  // Only used streams have a close line, and the session's totals are exactly their sum.
  expect(closes.map((e) => e.streamId).sort()).toEqual(opens.map((e) => e.streamId).sort());
  const session = audit.find((e) => e.event === "session.close")!;
  expect(session.streams).toBe(5);
  expect(session.bytesUp).toBe(closes.reduce((n, e) => n + Number(e.bytesUp), 0));
  expect(await metric(d, "tessera_streams_pooled")).toBe(0);
  // The relay's byte counter is the sum of the close lines too: the spares' handshakes are not in it.
  expect(await metric(d, 'tessera_relayed_bytes_total{direction="guest_to_agent"}')).toBe(Number(session.bytesUp));
  expect(echo.accepted()).toBe(probe + 5);
  host.kill("SIGINT");
  await host.exit();
  echo.close();
});

test("--pool 0 keeps no spares: each connection opens its own stream, audited without the pooled mark", async () => {
  const d = await deploy();
  const echo = await countingEcho();
  const { host, code } = await share(d, echo.port);
  const { guest, local } = await joinApproved(d, host, code, "nopool", ["--pool", "0"]);
  const payload = Buffer.from("one stream, opened on demand");
  expect((await roundTrip(local, payload)).equals(payload)).toBe(true);
  const opens = d.audit().filter((e) => e.event === "stream.open");
  expect(opens).toHaveLength(1);
  expect(opens[0]!.pooled).toBeUndefined();
  expect(await metric(d, "tessera_streams_pooled")).toBe(0);
  guest.kill("SIGINT");
  host.kill("SIGINT");
  await Promise.all([guest.exit(), host.exit()]);
  echo.close();
});

test("join --pool refuses a bad size before asking anyone", async () => {
  const d = await deploy();
  const { run } = await import("./harness.ts");
  const r = await run(["join", "ABCD-EFGH", "--pool", "100"], d.guestEnv);
  expect(r.code).not.toBe(0);
  expect(r.err).toContain("--pool 100: give a number of streams from 0 (none kept ready) to 64");
});
