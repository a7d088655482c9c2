// A session's one data channel end to end: it is up before any local connection and reaches nothing,
// every local connection is an audited stream inside it (the coordinator holds one connection pair for the
// session whatever the streams), a slow reader stalls only its own stream, and a channel cut mid-stream
// ends that stream cleanly while the session goes on, on a new channel, without a new yes.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import { createHash, randomBytes } from "node:crypto";
import { auditEvents, deploy, joinApproved, killAll, roundTrip, share, type Deployment } from "./harness.ts";
import { guestInProcess, shareWith } from "./direct-helpers.ts";
import { eventually } from "../coordinator/live.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

/**
 * A target that echoes, except that a connection whose first bytes are "FLOOD" gets 16 MiB of a known
 * pattern at once (as fast as its reader takes it), and it counts the connections it accepted.
 */
async function target(): Promise<{ port: number; accepted: () => number; close: () => void }> {
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    s.on("error", () => {});
    s.once("data", (first: Buffer) => {
      if (first.toString() === "FLOOD") {
        s.end(flood());
        return;
      }
      s.write(first);
      s.pipe(s);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, accepted: () => accepted, close: () => server.close() };
}

const FLOOD_BYTES = 16 << 20;
function flood(): Buffer {
  const b = Buffer.alloc(FLOOD_BYTES);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32BE(i, i);
  return b;
}

async function metric(d: Deployment, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in /metrics`);
  return Number(line.split(" ")[1]);
}

/** TCP sockets a process holds (listeners included), from its file descriptors. */
function sockets(pid: number): number {
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:")) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

/** A local connection held open: its echo of `payload` is awaited, then it stays open until destroyed. */
async function held(port: number, payload: Buffer): Promise<net.Socket> {
  const s = net.connect({ port, host: "127.0.0.1" });
  s.on("error", () => {});
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    s.on("data", (c: Buffer) => {
      got += c.length;
      if (got >= payload.length) resolve();
    });
    s.once("close", () => reject(new Error("closed before its echo")));
    s.write(payload);
  });
  return s;
}

test("one channel per session: up before any connection and reaching nothing; 20 held streams add no socket at the coordinator; each is audited once with its exact bytes", async () => {
  const d = await deploy();
  const t = await target();
  const { host, code } = await share(d, t.port);
  // share checks once that its target listens: that one connection is not a stream's.
  const probe = t.accepted();
  // On the relay: this test counts what the coordinator holds and relays. `--pool` is accepted, and does nothing.
  const { guest, local } = await joinApproved(d, host, code, "chan", ["--relay-only", "--pool", "3"]);
  await eventually(async () => {
    const n = await metric(d, "tessera_channels_open");
    if (n !== 1) throw new Error(`${n} channels`);
  }, "the session's channel");
  expect(t.accepted()).toBe(probe);
  expect(d.audit().some((e) => e.event === "stream.open")).toBe(false);
  expect(await metric(d, "tessera_streams_total")).toBe(0);

  const first = await held(local, Buffer.from("warm-up"));
  const before = sockets(d.coordinator.proc.pid);
  const payloads = Array.from({ length: 20 }, (_, i) => randomBytes(10_000 + i));
  const conns = await Promise.all(payloads.map((p) => held(local, p)));
  // Twenty more streams, and not one more socket at the coordinator (each was two before the channel).
  expect(sockets(d.coordinator.proc.pid)).toBe(before);
  expect(await metric(d, "tessera_channels_open")).toBe(1);
  expect(t.accepted()).toBe(probe + 21);
  for (const c of [first, ...conns]) c.end();
  await auditEvents(d, "stream.close", 21);

  guest.kill("SIGINT");
  expect(await guest.exit()).toBe(0);
  const [session] = await auditEvents(d, "session.close");
  const audit = d.audit();
  const opens = audit.filter((e) => e.event === "stream.open");
  const closes = audit.filter((e) => e.event === "stream.close");
  expect(opens).toHaveLength(21);
  expect(closes.map((e) => e.streamId).sort()).toEqual(opens.map((e) => e.streamId).sort());
  const sizes = ["warm-up".length, ...payloads.map((p) => p.length)].sort((a, b) => a - b);
  expect(closes.map((e) => Number(e.bytesUp)).sort((a, b) => a - b)).toEqual(sizes);
  expect(closes.map((e) => Number(e.bytesDown)).sort((a, b) => a - b)).toEqual(sizes);
  // The session's totals are the sum of its stream lines, and so is the relay's byte counter.
  expect(session!.streams).toBe(21);
  expect(session!.bytesUp).toBe(closes.reduce((n, e) => n + Number(e.bytesUp), 0));
  expect(await metric(d, 'tessera_relayed_bytes_total{direction="guest_to_agent"}')).toBe(Number(session!.bytesUp));
  expect(await metric(d, "tessera_channels_open")).toBe(0);
  host.kill("SIGINT");
  await host.exit();
  t.close();
});

test("flow control: a stream whose reader stops stalls alone; another moves 16 MiB byte-exact meanwhile, then the first gets all its bytes", async () => {
  const d = await deploy();
  const t = await target();
  const { host, code } = await share(d, t.port);
  const { guest, local } = await joinApproved(d, host, code, "slow", ["--relay-only"]);
  // Stream A asks for 16 MiB and reads nothing for now.
  const a = net.connect({ port: local, host: "127.0.0.1" });
  a.on("error", () => {});
  await new Promise<void>((r) => a.once("connect", () => r()));
  a.pause();
  a.write("FLOOD");
  // Stream B echoes 16 MiB through the same channel while A sits on its window.
  const payload = randomBytes(FLOOD_BYTES);
  const echoed = await roundTrip(local, payload);
  expect(echoed.length).toBe(payload.length);
  expect(echoed.equals(payload)).toBe(true);
  // A was held back by its own window, not by the channel: it read nothing, and now it gets everything.
  const got = createHash("sha256");
  let n = 0;
  const done = new Promise<void>((r) => a.once("end", () => r()));
  a.on("data", (c: Buffer) => {
    got.update(c);
    n += c.length;
  });
  a.resume();
  await done;
  expect(n).toBe(FLOOD_BYTES);
  expect(got.digest("hex")).toBe(createHash("sha256").update(flood()).digest("hex"));
  a.destroy();
  guest.kill("SIGINT");
  host.kill("SIGINT");
  await Promise.all([guest.exit(), host.exit()]);
  t.close();
});

test("a channel cut mid-stream: that stream ends (and has its close line), the session goes on on a new channel, no new yes", async () => {
  const d = await deploy();
  const t = await target();
  const { host, code } = await shareWith(d, t.port);
  const g = await guestInProcess(d, host, code, "cut", []);
  const first = randomBytes(30_000);
  expect((await roundTrip(g.local, first)).equals(first)).toBe(true);
  const live = await held(g.local, randomBytes(5_000));
  const closed = new Promise<void>((r) => live.once("close", () => r()));
  // The network breaks the channel's connection (here: the guest's end of it).
  (g.guest as unknown as { link: { current?: { inner: { terminate(): void } } } }).link.current!.inner.terminate();
  await closed;
  // The next connection works on a new channel, with no prompt at the host.
  const next = randomBytes(30_000);
  expect((await roundTrip(g.local, next)).equals(next)).toBe(true);
  expect(host.all.match(/Allow cut /g)).toHaveLength(1);
  const opens = (await auditEvents(d, "stream.open", 3)).map((e) => e.streamId);
  const closes = await auditEvents(d, "stream.close", 3);
  expect(closes.map((e) => e.streamId).sort()).toEqual([...opens].sort());
  expect(d.audit().filter((e) => e.event === "session.close")).toEqual([]);
  await g.guest.close();
  host.kill("SIGINT");
  await host.exit();
  t.close();
});
