// In-process tests of the coordinator's part in the direct path (coordinator/direct.ts): it relays a
// guest's hints unchanged and once, takes path and byte reports only from the session's agent, opens
// and audits every direct stream before either side learns its token, and falls back to the relay.
import { afterEach, expect, test } from "bun:test";
import { metrics } from "../../src/coordinator/metrics.ts";
import { refusal, until, World, type Approved } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

const HINTS = { hints: [{ host: "192.168.1.20", port: 40001 }], key: "AAAA", sig: "BBBB" };
const relayed = () =>
  metrics.bytesRelayed.value({ direction: "guest_to_agent" }) +
  metrics.bytesRelayed.value({ direction: "agent_to_guest" });

async function directSession(): Promise<Approved> {
  const s = await w.session();
  await w.send(s.guest, { t: "hints", sessionId: s.sessionId, ...HINTS });
  await w.send(s.host, { t: "direct", sessionId: s.sessionId, ok: true, offered: 1, dialled: 1, refused: 0, over: 0 });
  return s;
}

test("a guest's hints are audited and relayed to the agent unchanged, once a session, and only from that guest", async () => {
  w = await World.open();
  const s = await w.session();
  const other = await w.session(s.host, "bob");
  // Not yours: another session's guest.
  expect((await refusal(w.send(other.guest, { t: "hints", sessionId: s.sessionId, ...HINTS }))).code).toBe(
    "no_session",
  );
  await w.send(s.guest, { t: "hints", sessionId: s.sessionId, ...HINTS });
  const got = await s.host.ch.wait("hints");
  expect(got).toEqual({ t: "hints", sessionId: s.sessionId, ...HINTS });
  expect(w.one("direct.hints")).toMatchObject({ sessionId: s.sessionId, offered: 1 });
  expect((await refusal(w.send(s.guest, { t: "hints", sessionId: s.sessionId, ...HINTS }))).code).toBe("limit");
  expect(s.host.ch.of("hints")).toHaveLength(1);
});

test("share --direct-listen: the agent's hints go to the guest, once; the guest's probe makes it the dialler of later streams", async () => {
  w = await World.open();
  const s = await w.session();
  await w.send(s.host, { t: "hints", sessionId: s.sessionId, ...HINTS });
  expect(await s.guest.ch.wait("hints")).toEqual({ t: "hints", sessionId: s.sessionId, ...HINTS });
  expect(w.one("direct.hints")).toMatchObject({ from: "host", offered: 1 });
  // Again (a reconnected agent sends them with each session): not relayed a second time.
  await w.send(s.host, { t: "hints", sessionId: s.sessionId, ...HINTS });
  expect(s.guest.ch.of("hints")).toHaveLength(1);
  await w.send(s.guest, { t: "direct", sessionId: s.sessionId, ok: true, offered: 1, dialled: 1, refused: 0, over: 0 });
  expect(w.one("direct.probe")).toMatchObject({ by: "guest", ok: true });
  const st = await w.channel(s, "a");
  const inc = await s.host.ch.wait("incoming", (f) => f.streamId === st.streamId);
  expect([st.dialer, inc.dialer, inc.channel]).toEqual(["guest", "guest", true]);
  expect(inc.direct).toBe(st.direct!);
  // Only the dialling side says a dial failed: the agent cannot, for a stream the guest dials.
  await w.send(s.host, {
    t: "direct-stream",
    sessionId: s.sessionId,
    reports: [{ streamId: st.streamId, state: "failed" }],
  });
  expect(w.events().filter((e) => e.event === "stream.fallback")).toHaveLength(0);
  await w.send(s.guest, {
    t: "direct-stream",
    sessionId: s.sessionId,
    reports: [{ streamId: st.streamId, state: "failed", reason: "refused" }],
  });
  // The agent waits for the guest's connection: it is the one told to take the relay.
  expect((await s.host.ch.wait("fallback")).streamId).toBe(st.streamId);
  expect(s.guest.ch.of("fallback")).toHaveLength(0);
  // A guest cannot report bytes or an open: that is the agent's word.
  expect(
    (
      await refusal(
        w.send(s.guest, {
          t: "direct-stream",
          sessionId: s.sessionId,
          reports: [{ streamId: st.streamId, state: "closed", up: 1, down: 1 }],
        }),
      )
    ).code,
  ).toBe("no_session");
});

test("--direct-listen: the agent's failed probe of the guest does not undo the guest's proof of the host, whichever comes first", async () => {
  w = await World.open();
  let host: Awaited<ReturnType<World["session"]>>["host"] | undefined;
  for (const agentFirst of [true, false]) {
    const s = await w.session(host, agentFirst ? "ann" : "ben");
    host = s.host;
    const guestOk = {
      t: "direct" as const,
      sessionId: s.sessionId,
      ok: true,
      offered: 1,
      dialled: 1,
      refused: 0,
      over: 0,
    };
    const agentFailed = { ...guestOk, ok: false, reason: "no hint reached the guest" };
    if (agentFirst) await w.send(s.host, agentFailed);
    await w.send(s.guest, guestOk);
    if (!agentFirst) await w.send(s.host, agentFailed);
    expect((await w.channel(s, "a")).dialer).toBe("guest");
  }
});

test("a probe's outcome comes only from the session's own sides, and is audited with its counts", async () => {
  w = await World.open();
  const s = await w.session();
  const other = await w.session(s.host, "bob");
  const report = {
    t: "direct" as const,
    sessionId: s.sessionId,
    ok: true,
    offered: 1000,
    dialled: 8,
    refused: 3,
    over: 989,
  };
  expect((await refusal(w.send(other.guest, report))).code).toBe("no_session");
  await w.send(s.host, report);
  expect(w.one("direct.probe")).toMatchObject({
    by: "host",
    ok: true,
    offered: 1000,
    dialled: 8,
    refused: 3,
    over: 989,
  });
});

test("on the direct path both sides get the channel's direct token (and different relay tokens); no line is written for the channel", async () => {
  w = await World.open();
  const s = await directSession();
  const st = await w.channel(s, "a");
  const inc = await s.host.ch.wait("incoming", (f) => f.streamId === st.streamId);
  expect(st.direct).toBeString();
  expect(inc.direct).toBe(st.direct!);
  expect(inc.channel).toBe(true);
  expect([typeof st.token, typeof inc.token]).toEqual(["string", "string"]);
  expect(inc.token).not.toBe(st.token);
  expect([st.direct, inc.direct]).not.toContain(st.token);
  expect(inc.reportMs).toBeGreaterThan(0);
  expect(w.names().filter((n) => n.startsWith("stream."))).toEqual([]);
  // Direct: no lapse timer (the agent's report bounds it), so it is not waiting on the relay.
  expect(w.broker.counts).toMatchObject({ streams: 1, pendingStreams: 0, channels: 1 });
});

test("a stream on a direct channel is audited first (path direct), and its bytes are the agent's, from the agent only", async () => {
  w = await World.open();
  const s = await directSession();
  const before = relayed();
  const byPath = metrics.streamsByPath.value({ path: "direct" });
  const direct = metrics.bytesDirect.value();
  const ch = await w.channel(s, "a");
  await w.report(s, { streamId: ch.streamId, state: "open" });
  const [inc] = await w.stream(s, ch.streamId, [1]);
  // The open line came first: the agent's frame waits for it to be on disk.
  expect(w.one("stream.open")).toMatchObject({ streamId: inc!.streamId, path: "direct" });
  expect(metrics.streamsByPath.value({ path: "direct" })).toBe(byPath + 1);
  // Reports about it come only from the agent.
  const guestSays = await refusal(w.report(s, { streamId: inc!.streamId, state: "closed", up: 1, down: 1 }, s.guest));
  expect(guestSays.code).toBe("no_session");
  await w.report(s, { streamId: inc!.streamId, state: "open", up: 10, down: 20 });
  expect(w.names()).not.toContain("stream.close");
  await w.report(s, { streamId: inc!.streamId, state: "closed", up: 1234, down: 5678 });
  await until(() => w.events().some((e) => e.event === "stream.close"), "the stream's close line");
  expect(w.one("stream.close")).toMatchObject({ streamId: inc!.streamId, bytesUp: 1234, bytesDown: 5678 });
  expect(metrics.bytesDirect.value()).toBe(direct + 1234 + 5678);
  expect(relayed()).toBe(before);
  // The channel stays for the session's next streams.
  expect(w.broker.counts).toMatchObject({ streams: 1, channels: 1 });
});

test("a direct dial that fails: the channel falls back to its relay tokens, the guest is told, later channels go through the relay", async () => {
  w = await World.open({ streamTokenTtlMs: 200 });
  const s = await directSession();
  const st = await w.channel(s, "a");
  // A direct channel has no lapse timer (the agent's report bounds it) until it falls back.
  expect(w.broker.counts.pendingStreams).toBe(0);
  await w.report(s, { streamId: st.streamId, state: "failed", reason: "192.168.1.20:40001: connection refused" });
  expect((await s.guest.ch.wait("fallback")).streamId).toBe(st.streamId);
  expect(w.one("stream.fallback")).toMatchObject({
    streamId: st.streamId,
    reason: "192.168.1.20:40001: connection refused",
  });
  expect(w.broker.counts.pendingStreams).toBe(1);
  // Its relay tokens now have the usual time to be used; nobody dials here, so it lapses (a channel: no line).
  await until(() => w.broker.counts.streams === 0, "the fallen-back channel lapsing");
  const next = await w.channel(s, "b");
  expect(next.direct).toBeUndefined();
  const [inc] = await w.stream(s, next.streamId, [1]);
  expect(w.one("stream.open")).toMatchObject({ streamId: inc!.streamId, path: "relay" });
  // A "failed" for a channel that is not direct (any more) changes nothing.
  await w.report(s, { streamId: next.streamId, state: "failed" });
  expect(w.events().filter((e) => e.event === "stream.fallback")).toHaveLength(1);
  expect(s.guest.ch.of("fallback")).toHaveLength(1);
});

/** A session on the direct path whose guest ends it while a stream is live (the agent last reported 10 up, 20 down). */
async function endedWithLiveDirectStream() {
  w = await World.open();
  const s = await directSession();
  const ch = await w.channel(s);
  const [st] = await w.stream(s, ch.streamId, [1]);
  await w.report(s, { streamId: st!.streamId, state: "open", up: 10, down: 20 });
  await w.send(s.guest, { t: "end", sessionId: s.sessionId });
  return { s, st: st!, ch };
}

test("the session's end ends its direct streams; their lines, then the session's, carry the agent's final counts", async () => {
  const { s, st, ch } = await endedWithLiveDirectStream();
  // The agent hears at once and cuts; until its final word the lines wait (the last report said 10/20).
  expect(s.host.ch.of("closed")).toHaveLength(1);
  expect(w.events().filter((e) => e.event === "stream.close" || e.event === "session.close")).toEqual([]);
  // The session is gone here, yet its agent's final counts for the stream are taken.
  await w.send(s.host, {
    t: "direct-stream",
    sessionId: s.sessionId,
    reports: [{ streamId: st.streamId, state: "closed", up: 2583, down: 4600 }],
  });
  expect(w.one("stream.close")).toMatchObject({ streamId: st.streamId, bytesUp: 2583, bytesDown: 4600 });
  expect(w.one("session.close")).toMatchObject({ bytesUp: 2583, bytesDown: 4600 });
  const order = w
    .events()
    .map((e) => e.event)
    .filter((e) => e === "stream.close" || e === "session.close");
  expect(order).toEqual(["stream.close", "session.close"]);
  // The channel's own final word is taken too, and writes nothing: it was never a stream.
  await w.report(s, { streamId: ch.streamId, state: "closed", up: 9999, down: 9999 });
  expect(w.one("session.close")).toMatchObject({ streams: 1, bytesUp: 2583, bytesDown: 4600 });
});

test("an agent that never gives its final counts: the lines come after a bounded wait, with the last counts it reported", async () => {
  const { s, st } = await endedWithLiveDirectStream();
  await until(() => w.events().some((e) => e.event === "session.close"), "the session's close line");
  expect(w.one("stream.close")).toMatchObject({ streamId: st.streamId, bytesUp: 10, bytesDown: 20 });
  expect(w.one("session.close")).toMatchObject({ bytesUp: 10, bytesDown: 20 });
  // Someone else's word on that stream is not taken as final.
  const other = await w.session(s.host, "bob");
  expect(
    (
      await refusal(
        w.send(other.guest, {
          t: "direct-stream",
          sessionId: s.sessionId,
          reports: [{ streamId: st.streamId, state: "failed" }],
        }),
      )
    ).code,
  ).toBe("no_session");
});

test("an agent that reconnects has forgotten the session's direct path until it says it kept it: new streams go through the relay until then", async () => {
  w = await World.open();
  const s = await directSession();
  // The same host's agent comes back on a new connection (its old one dropped).
  w.broker.drop(s.host);
  const again = await w.hello(w.peer({ host: s.host.host }));
  await w.send(again, { t: "register", shareId: "web", targets: ["127.0.0.1:22"], approver: true });
  expect((await w.channel(s, "a")).direct).toBeUndefined();
  // Until it says the path it proved before still holds (it dials nothing to say so): new streams go direct
  // again, the guest is told (it asks for a direct channel), and the audit line says the path was kept, not probed.
  // The guest heard: direct (the probe), relay (the agent gone), relay (back, nothing kept yet).
  const paths = () => s.guest.ch.of("path").map((f) => f.path);
  expect(paths()).toEqual(["direct", "relay", "relay"]);
  await w.send(again, {
    t: "direct",
    sessionId: s.sessionId,
    ok: true,
    offered: 0,
    dialled: 0,
    refused: 0,
    over: 0,
    kept: true,
  });
  expect(paths()).toEqual(["direct", "relay", "relay", "direct"]);
  expect(
    w
      .events()
      .filter((e) => e.event === "direct.probe")
      .at(-1),
  ).toMatchObject({ by: "host", ok: true, kept: true, dialled: 0 });
  expect((await w.channel(s, "b")).direct).toBeString();
});

test("a session's guest hears when its agent goes and when it is back on a new connection (its channel follows the path)", async () => {
  w = await World.open();
  const s = await w.session();
  w.broker.drop(s.host);
  expect(s.guest.ch.of("path")).toEqual([{ t: "path", sessionId: s.sessionId, path: "relay" }]);
  const again = await w.hello(w.peer({ host: s.host.host }));
  await w.send(again, { t: "register", shareId: "web", targets: ["127.0.0.1:22"], approver: true });
  await until(() => s.guest.ch.of("path").length === 2, "the guest told the agent is back");
  expect(s.guest.ch.of("path")[1]).toEqual({ t: "path", sessionId: s.sessionId, path: "relay" });
});
