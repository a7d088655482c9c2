// A hostile approved guest against the host's target, on the session's data channel (issue 29): frames for
// stream ids the coordinator never opened, channel asks past the caps, opens that carry no bytes, and a
// data connection that never starts its TLS must not reach the target, must be refused with clear words,
// and must not keep the session from idling out.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import type { Socket } from "bun";
import { ControlClient } from "../../src/wire/control-client.ts";
import { DATA_MAGIC, type FrameOf, type ServerFrame } from "../../src/wire/protocol.ts";
import { MuxReset } from "../../src/wire/mux-frames.ts";
import { createCsr, exportPrivateKeyPem, generateKeyPair, readCsr } from "../../src/pki/index.ts";
import { startCode } from "../../src/guest/code-check.ts";
import { guestTls } from "../../src/guest/stream-context.ts";
import { connectData, TLS_1_3 } from "../../src/data/data-dial.ts";
import { startVerified } from "../../src/data/verified-stream.ts";
import { MuxChannel } from "../../src/data/mux.ts";
import type { MuxStream } from "../../src/data/mux-stream.ts";
import type { End } from "../../src/data/pipe.ts";
import { ProtocolError } from "../../src/errors.ts";
import { agentShare, auditEvents, deploy, killAll, share, type Deployment, type Proc } from "./harness.ts";

setDefaultTimeout(90_000);
const targets: net.Server[] = [];
const clients: ControlClient[] = [];
const sockets: { terminate(): void }[] = [];
afterAll(async () => {
  for (const s of sockets) s.terminate();
  for (const c of clients) c.close();
  await killAll();
  for (const t of targets) t.close();
});

/** Resolves waiters whose condition holds each time something changes: tests wait on events, not sleeps. */
class Changes {
  private readonly waiters = new Set<() => void>();
  changed(): void {
    for (const w of [...this.waiters]) w();
  }
  until(cond: () => boolean, what: () => string, timeoutMs = 30_000): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!cond()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${what()} did not happen`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }
}
/** One bus for the target, the guest's frames and its channel: a condition may span them. */
const changes = new Changes();

/** A target that echoes, and counts the connections it accepted, those it still holds, and every byte it got. */
async function countingTarget() {
  const open = new Set<net.Socket>();
  const got: Buffer[] = [];
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    open.add(s);
    s.on("data", (b: Buffer) => {
      got.push(b);
      s.write(b);
    });
    s.on("end", () => s.end());
    s.on("error", () => {});
    s.on("close", () => {
      open.delete(s);
      changes.changed();
    });
    changes.changed();
  });
  targets.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    get accepted() {
      return accepted;
    },
    get open() {
      return open.size;
    },
    /** Every byte any connection brought the target. */
    received: () => Buffer.concat(got),
    /** Resolves once `cond` holds (checked on every accept and close); rejects after a bounded wait saying what it saw. */
    until: (cond: () => boolean, what: string) =>
      changes.until(cond, () => `target: ${what} (accepted ${accepted}, open ${open.size})`),
  };
}

/** A stream of the hostile guest's channel, seen from the guest: what came back, and how it ended. */
interface GuestStream {
  id: number;
  s: MuxStream;
  got: () => Buffer;
  /** Undefined while open; then the reset (if any) it ended with. */
  ended: { reset?: { reason: MuxReset; remote: boolean } } | undefined;
}

/** A verified channel as a hostile guest holds it: its MuxChannel (opener), streams opened at will. */
interface GuestChannel {
  id: string;
  mux: MuxChannel;
  stream(id: number): GuestStream;
}

type Answer = FrameOf<ServerFrame, "stream"> | FrameOf<ServerFrame, "error">;

/**
 * A guest that redeems the code itself over the control protocol (a real approval by the host), then speaks
 * frames at will: it holds its own key, so it can build a real channel and put on it whatever it likes.
 */
async function hostileGuest(d: Deployment, approver: Proc, code: string, name: string) {
  const caPem = fs.readFileSync(path.join(d.dir, "pki/ca.crt"), "utf8");
  const c = await ControlClient.dial({ address: d.address, caPem, version: "test" });
  clients.push(c);
  const keys = await generateKeyPair();
  const keyPem = await exportPrivateKeyPem(keys.privateKey);
  const csr = await createCsr({ keys, commonName: name });
  const run = startCode(code, { spki: (await readCsr(csr)).spki, name, reason: "load test" });
  c.send({ t: "redeem", ...run.redeem, csr, name, reason: "load test" });
  // The host's answer is waited for from before the confirmation goes out (it may follow "confirmed" at once).
  const { answer } = await run.confirm(c, await c.next("pending"));
  await approver.waitFor(new RegExp(`Allow ${name} `));
  approver.write("y\n");
  const approved = await answer;
  if (approved.t !== "approved") throw new Error(`the host's answer was ${approved.t}: ${approved.reason}`);
  const { sessionId, hostSpki } = approved;
  const tls = guestTls(keyPem, approved.cert, caPem, TLS_1_3);
  const answers = new Map<string, Answer>();
  const refused: FrameOf<ServerFrame, "refused">[] = [];
  let closed: string | undefined;
  let refs = 0;
  c.on("stream", (f) => {
    answers.set(f.ref, f);
    changes.changed();
  });
  c.on("error", (f) => {
    answers.set(f.ref ?? "", f);
    changes.changed();
  });
  c.on("refused", (f) => {
    refused.push(f);
    changes.changed();
  });
  c.on("closed", (f) => {
    closed = f.reason;
    changes.changed();
  });
  const until = (cond: () => boolean, what: string) => changes.until(cond, () => `guest: ${what}`);

  /** The answer (a channel's tokens or a refusal) to the open with this ref. */
  async function answerTo(ref: string): Promise<Answer> {
    await until(() => answers.has(ref) || closed !== undefined, `an answer to ${ref}`);
    if (!answers.has(ref)) throw new Error(`session closed (${closed}) before "${ref}" was answered`);
    return answers.get(ref)!;
  }

  /** Asks for a data channel; returns the ref its answer will name. */
  function askChannel(): string {
    const ref = `k${++refs}`;
    c.send({ t: "open", sessionId, ref, channel: true });
    return ref;
  }

  /** Dials the data port with the channel's token and runs the end-to-end TLS with the host's key pinned. */
  async function connectChannel(st: FrameOf<ServerFrame, "stream">): Promise<GuestChannel> {
    const raw = await connectData(c.peer);
    sockets.push(raw);
    const inner = await new Promise<Socket<End>>((resolve, reject) => {
      const conn = startVerified(raw, {
        token: st.token,
        tls,
        isServer: false,
        peerRole: "host",
        peerSpki: hostSpki,
        checked: {},
        onVerified: resolve,
        onRejected: (why) => reject(new Error(why)),
        onClose: () => reject(new Error("the channel closed before its TLS was verified")),
      });
      sockets.push(conn.inner);
    });
    // As channel-link.ts up() does: the verified socket's bytes are the channel's from now on.
    const mux = new MuxChannel(
      { write: (b) => inner.write(b), close: () => inner.end() },
      { role: "opener", onClose: () => changes.changed() },
    );
    const early = inner.data.early;
    inner.data.early = [];
    inner.data.earlyBytes = 0;
    inner.data.sink = {
      feed: (b) => mux.feed(b),
      drained: () => mux.drained(),
      ended: () => {
        mux.transportClosed(new ProtocolError("the host closed the data channel", "disconnected"));
        inner.end();
      },
      gone: () => mux.transportClosed(),
    };
    for (const b of early) mux.feed(b);
    return {
      id: st.streamId,
      mux,
      stream(id: number): GuestStream {
        const s = mux.open(id);
        const chunks: Buffer[] = [];
        const gs: GuestStream = { id, s, got: () => Buffer.concat(chunks), ended: undefined };
        s.attach({
          data: (b) => {
            chunks.push(b);
            s.consumed(b.length);
            changes.changed();
          },
          end: () => changes.changed(),
          drain: () => {},
          close: (reset) => {
            gs.ended = { reset };
            changes.changed();
          },
        });
        return gs;
      },
    };
  }

  return {
    sessionId,
    refused,
    get closed() {
      return closed;
    },
    send: (f: Parameters<ControlClient["send"]>[0]) => c.send(f),
    askChannel,
    answerTo,
    /** A channel asked for and connected: the coordinator's answer, then the verified TLS. */
    async channel(): Promise<GuestChannel> {
      const a = await answerTo(askChannel());
      if (a.t !== "stream") throw new Error(`channel refused: ${a.message}`);
      return connectChannel(a);
    },
    connectChannel,
    /** Tells the coordinator of streams opened on channel `via` (as the real guest does, one frame a turn). */
    openOn(via: string, ids: number[]) {
      c.send({ t: "open", sessionId, ref: `m${++refs}`, via, mux: ids });
    },
    until,
    sessionEnd: () => until(() => closed !== undefined, "the session's end").then(() => closed!),
  };
}

async function gauge(d: Deployment, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  if (!m) throw new Error(`/metrics has no ${name}`);
  return Number(m[1]);
}

/** Polls the coordinator's gauges (a scrape is its only way to tell) until they read `want`. */
async function gaugesReach(d: Deployment, want: Record<string, number>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen: Record<string, number> = {};
    for (const k of Object.keys(want)) seen[k] = await gauge(d, k);
    if (Object.keys(want).every((k) => seen[k] === want[k])) return;
    if (Date.now() > deadline) throw new Error(`gauges ${JSON.stringify(seen)}, expected ${JSON.stringify(want)}`);
    await Bun.sleep(50);
  }
}

/** `share --port` checks once at start that something listens on its target: that connection is not a stream's. */
async function shareOn(d: Deployment, target: Awaited<ReturnType<typeof countingTarget>>) {
  const { host, code } = await share(d, target.port);
  await target.until(() => target.accepted >= 1 && target.open === 0, "the share's start-up check");
  return { host, code, startup: target.accepted };
}

/** Sends `payload` on stream `id` (bytes first, then the open, as a real guest may) and half-closes it. */
function sendThenOpen(g: Awaited<ReturnType<typeof hostileGuest>>, ch: GuestChannel, id: number, payload: Buffer) {
  const st = ch.stream(id);
  st.s.write(payload);
  st.s.end();
  g.openOn(ch.id, [id]);
  return st;
}

test("frames for stream ids the coordinator never opened are held at the agent, never reach the target, and are reset; opened ids on the same channel echo", async () => {
  const d = await deploy();
  const target = await countingTarget();
  const { host, code, startup } = await shareOn(d, target);
  const g = await hostileGuest(d, host, code, "mallory");
  const ch = await g.channel();
  const payload = (n: number) => crypto.getRandomValues(Buffer.alloc(100_000 + n));
  // Stream 1 first: the channel works end to end, and the agent has served this session's target.
  const p1 = payload(1);
  const s1 = sendThenOpen(g, ch, 1, p1);
  await g.until(() => s1.ended !== undefined, "stream 1's end");
  expect(s1.ended!.reset).toBeUndefined();
  expect(s1.got().equals(p1)).toBe(true);
  // Ids 2, 4 and a far one carry bytes (and a half-close) but are never named to the coordinator; id 3,
  // sent alongside, is. The agent holds all four until the word, which comes for 3 alone.
  const HELD = "held-bytes-never-for-the-target";
  const held = [2, 4, 0xfffffff0].map((n) => ch.stream(n));
  for (const h of held) {
    h.s.write(Buffer.from(`${HELD} ${h.id}`));
    h.s.end();
  }
  const p3 = payload(3);
  const s3 = sendThenOpen(g, ch, 3, p3);
  await g.until(() => s3.ended !== undefined, "stream 3's end");
  expect(s3.ended!.reset).toBeUndefined();
  expect(s3.got().equals(p3)).toBe(true);
  // Reset by the agent once their hold ran out (MuxReset.refused), each on its own; the channel stays.
  await g.until(() => held.every((h) => h.ended !== undefined), "the held streams' resets");
  for (const h of held) expect(h.ended!.reset).toEqual({ reason: MuxReset.refused, remote: true });
  expect(held.every((h) => h.got().length === 0)).toBe(true);
  expect(ch.mux.closed).toBe(false);
  // The same channel still serves an opened stream after the resets.
  const s5 = sendThenOpen(g, ch, 5, Buffer.from("after the resets"));
  await g.until(() => s5.ended !== undefined, "stream 5's end");
  expect(s5.ended!.reset).toBeUndefined();
  expect(s5.got().toString()).toBe("after the resets");
  // One target connection per opened stream, none for the held ids (an agent that dialled on the guest's
  // bytes, before the coordinator's word, would show 3 more), and not one held byte reached it.
  expect(target.accepted).toBe(startup + 3);
  expect(target.received().includes(HELD)).toBe(false);
  expect(target.received().length).toBe(p1.length + p3.length + "after the resets".length);
  // Only the opened streams are in the audit log, each closed with the agent's byte counts.
  const closes = await auditEvents(d, "stream.close", 3);
  expect((await auditEvents(d, "stream.open")).length).toBe(3);
  expect(closes.map((e) => e.bytesUp as number).sort((a, b) => a - b)).toEqual([16, 100_001, 100_003]);
  expect(closes.map((e) => e.bytesDown as number).sort((a, b) => a - b)).toEqual([16, 100_001, 100_003]);
  // A live id named twice is one stream: the second word is turned down (a line of its own, no bytes), and
  // no second target connection is made for it.
  const s6 = ch.stream(6);
  s6.s.write(Buffer.from("six"));
  g.openOn(ch.id, [6]);
  await g.until(() => s6.got().length === 3, "stream 6's echo");
  g.openOn(ch.id, [6]);
  // Streams 1, 3 and 5 have their lines, 6 is live: the fourth line is the second word's.
  const twice = (await auditEvents(d, "stream.close", 4))[3]!;
  expect(twice).toMatchObject({ bytesUp: 0, bytesDown: 0 });
  expect(String(twice.reason)).toContain("opened twice");
  s6.s.write(Buffer.from("still six"));
  s6.s.end();
  await g.until(() => s6.ended !== undefined, "stream 6's end");
  expect(s6.ended!.reset).toBeUndefined();
  expect(s6.got().toString()).toBe("sixstill six");
  expect(target.accepted).toBe(startup + 4);
  const last = await auditEvents(d, "stream.close", 5);
  expect(
    last
      .map((e) => e.bytesUp as number)
      .slice(3)
      .sort((a, b) => a - b),
  ).toEqual([0, 12]);
  expect(g.closed).toBeUndefined();
  host.kill("SIGINT");
  await host.exit();
});

/** A standalone agent (its own flags) with `share --share-id` answering for it; no start-up check reaches the target. */
async function agentAndApprover(d: Deployment, targetPort: number, agentArgs: string[]) {
  const { agent, approver } = await agentShare(d, "db", targetPort, agentArgs);
  const code = (await approver.waitFor(/code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
  return { agent, approver, code };
}

test("channel asks past the caps are refused with a clear error, and channels never connected lapse at the token's lifetime", async () => {
  const d = await deploy(["--stream-token-ttl", "3s", "--max-pending-streams", "2"]);
  const target = await countingTarget();
  // The agent's own setup deadline is far away: only the coordinator's lapse can end a channel never connected.
  const { agent, approver: host, code } = await agentAndApprover(d, target.port, ["--stream-setup-timeout", "10m"]);
  const g = await hostileGuest(d, host, code, "greedy");
  // Four channels, each connected before the next is asked for: the session's cap.
  const live = [];
  for (let i = 0; i < 4; i++) live.push(await g.channel());
  const fifth = await g.answerTo(g.askChannel());
  if (fifth.t !== "error") throw new Error("a fifth live channel was granted");
  expect(fifth.code).toBe("limit");
  expect(fifth.message).toContain("4 data channels of this session are open");
  await gaugesReach(d, { tessera_channels_open: 4, tessera_streams_pending: 0 });
  // Three let go: the coordinator forgets them once both ends have closed.
  for (const ch of live.slice(1)) ch.mux.close();
  await gaugesReach(d, { tessera_channels_open: 1 });
  // Asked for and never connected: two wait (the pending cap), the third is refused.
  const asks = [g.askChannel(), g.askChannel(), g.askChannel()];
  const answers = await Promise.all(asks.map((r) => g.answerTo(r)));
  expect(answers.map((a) => a.t)).toEqual(["stream", "stream", "error"]);
  const third = answers[2] as FrameOf<ServerFrame, "error">;
  expect(third.code).toBe("limit");
  expect(third.message).toContain("2 connections of this session are still waiting to connect");
  // Counted while they wait (within the token's lifetime: a scrape is milliseconds, the lifetime 3s)...
  await gaugesReach(d, { tessera_channels_open: 3, tessera_streams_pending: 2 });
  // ...then they lapse at the token's lifetime (the agent had dialled its end: that goes too), and the gauges come down.
  await gaugesReach(d, { tessera_channels_open: 1, tessera_streams_pending: 0 });
  // Lapsed asks no longer count: the guest may ask again.
  const again = await g.answerTo(g.askChannel());
  expect(again.t).toBe("stream");
  // No channel, granted, refused or lapsed, reached the target; the session lives on.
  expect(target.accepted).toBe(0);
  expect(g.closed).toBeUndefined();
  for (const p of [host, agent]) p.kill("SIGINT");
  await Promise.all([host.exit(), agent.exit()]);
});

test("opens are not activity: a guest that only opens streams (no bytes) still idles out, and every target connection closes", async () => {
  const d = await deploy(["--idle-timeout", "2s"]);
  const target = await countingTarget();
  const { host, code, startup } = await shareOn(d, target);
  const g = await hostileGuest(d, host, code, "idler");
  const ch = await g.channel();
  // One open every 50 ms (the guest's pace: the sleep sets its rate, no outcome is timed by it), each waited
  // for at the target (the agent reached it on the coordinator's word), none sending a byte. On a session
  // that counted opens as activity this would go on to the bound, 15 idle timeouts away.
  const bound = Date.now() + 30_000;
  let n = 0;
  while (g.closed === undefined && Date.now() < bound) {
    n++;
    ch.stream(n);
    g.openOn(ch.id, [n]);
    await g.until(() => target.accepted >= startup + n || g.closed !== undefined, `stream ${n} at the target`);
    await Bun.sleep(50);
  }
  expect(g.closed).toBe("idle for 2s");
  expect((await auditEvents(d, "session.idle"))[0]!.sessionId).toBe(g.sessionId);
  // The opens did reach the target (real streams), and every connection made for them closes with the session.
  expect(target.accepted).toBeGreaterThan(startup + 1);
  await target.until(() => target.open === 0, "no target connection left open");
  expect(target.received().length).toBe(0);
  host.kill("SIGINT");
  await host.exit();
});

test("a data connection that never starts its TLS: the agent drops the channel at its own deadline, and its streams never reach the target", async () => {
  // The coordinator's token lifetime is left long: once paired, a channel is the agent's to bound.
  const d = await deploy(["--stream-token-ttl", "60s"]);
  const target = await countingTarget();
  const { agent, approver, code } = await agentAndApprover(d, target.port, ["--stream-setup-timeout", "2s"]);
  const g = await hostileGuest(d, approver, code, "stall");
  const st = await g.answerTo(g.askChannel());
  if (st.t !== "stream") throw new Error(`channel refused: ${st.message}`);
  // The token is presented, so the coordinator pairs the channel; then not one byte of TLS follows.
  const data = net.connect({ host: "127.0.0.1", port: d.port });
  sockets.push({ terminate: () => data.destroy() });
  data.on("error", () => {});
  let dataClosed = false;
  data.on("close", () => {
    dataClosed = true;
    changes.changed();
  });
  data.write(Buffer.concat([DATA_MAGIC, Buffer.from(st.token, "base64url")]));
  // A stream named on it waits at the agent for the channel's TLS, which never comes.
  g.openOn(st.streamId, [1]);
  // Paired (no channel waits for a connection) while the data connection is still open.
  await gaugesReach(d, { tessera_streams_pending: 0, tessera_channels_open: 1 });
  expect(dataClosed).toBe(false);
  await g.until(() => dataClosed, "the data connection dropped at the agent's deadline");
  await gaugesReach(d, { tessera_channels_open: 0 });
  // The stream is refused by the agent, with its words, and nothing reached the target.
  await g.until(() => g.refused.length === 1, "the agent's refusal of the stream");
  expect(g.refused[0]!.reason).toBe("the stream's data channel is gone");
  const [closed] = await auditEvents(d, "stream.close");
  expect(closed!.reason).toBe("the host refused the stream: the stream's data channel is gone");
  expect(target.accepted).toBe(0);
  expect(g.closed).toBeUndefined();
  for (const p of [approver, agent]) p.kill("SIGINT");
  await Promise.all([approver.exit(), agent.exit()]);
});
