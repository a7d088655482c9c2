// A hostile approved guest against the host's target, on the session's data channel (issue 29): frames for
// stream ids the coordinator never opened, channel asks past the caps, opens that carry no bytes, and a
// data connection that never starts its TLS must not reach the target, must be refused with clear words,
// and must not keep the session from idling out. The guest is hostile-channel.ts's.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import net from "node:net";
import { DATA_MAGIC, type FrameOf, type ServerFrame } from "../../src/wire/protocol.ts";
import { MuxReset } from "../../src/wire/mux-frames.ts";
import { agentShare, auditEvents, deploy, killAll, share, type Deployment } from "./harness.ts";
import {
  changes,
  closeHostile,
  countingTarget,
  gaugesReach,
  hostileGuest,
  track,
  type CountingTarget,
  type GuestChannel,
  type HostileGuest,
} from "./hostile-channel.ts";

setDefaultTimeout(90_000);
afterAll(async () => {
  closeHostile();
  await killAll();
});

/** `share --port` checks once at start that something listens on its target: that connection is not a stream's. */
async function shareOn(d: Deployment, target: CountingTarget) {
  const { host, code } = await share(d, target.port);
  await target.until(() => target.accepted >= 1 && target.open === 0, "the share's start-up check");
  return { host, code, startup: target.accepted };
}

/** Sends `payload` on stream `id` (bytes first, then the open, as a real guest may) and half-closes it. */
function sendThenOpen(g: HostileGuest, ch: GuestChannel, id: number, payload: Buffer) {
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
  track({ terminate: () => data.destroy() });
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
