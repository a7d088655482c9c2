// In-process tests of data channels asked for but never connected: they count against the caps until their
// tokens lapse, they are not activity for the idle timeout, and the metrics tell them apart from streams.
import { afterEach, expect, test } from "bun:test";
import { renderMetrics } from "../../src/coordinator/metrics.ts";
import { refusal, until, World } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

const openChannel = (s: { guest: Parameters<World["send"]>[0]; sessionId: string }, ref: string) =>
  w.send(s.guest, { t: "open", sessionId: s.sessionId, ref, channel: true });

test("maxPendingStreamsPerSession: channels nobody connects count until their tokens lapse, then free their places", async () => {
  w = await World.open({ maxPendingStreamsPerSession: 2, streamTokenTtlMs: 100 });
  const s = await w.session();
  await openChannel(s, "a");
  await openChannel(s, "b");
  const err = await refusal(openChannel(s, "c"));
  expect([err.code, err.ref]).toEqual(["limit", "c"]);
  expect(err.message).toBe("2 connections of this session are still waiting to connect");
  expect(s.host.ch.of("incoming")).toHaveLength(2);
  expect(w.broker.counts).toMatchObject({ streams: 2, pendingStreams: 2, channels: 2 });
  await until(() => w.broker.counts.streams === 0, "both channels lapsing");
  expect(w.broker.counts).toMatchObject({ pendingStreams: 0, channels: 0 });
  // A channel is no stream in the log: it lapses without a line.
  expect(w.names().filter((n) => n.startsWith("stream."))).toEqual([]);
  expect((await w.channel(s, "d")).sessionId).toBe(s.sessionId);
});

test("maxStreamsPerSession counts an unconnected channel too, until it lapses", async () => {
  w = await World.open({ maxStreamsPerSession: 1, streamTokenTtlMs: 100 });
  const s = await w.session();
  await openChannel(s, "a");
  const err = await refusal(openChannel(s, "b"));
  expect([err.code, err.ref, err.message]).toEqual(["limit", "b", "stream limit reached for this session"]);
  await until(() => w.broker.counts.streams === 0, "the channel lapsing");
  await w.channel(s, "c");
});

test("a session holds at most 4 live channels, whatever the other caps allow", async () => {
  w = await World.open({ streamTokenTtlMs: 60_000 });
  const s = await w.session();
  for (const ref of ["a", "b", "c", "d"]) await w.channel(s, ref);
  const err = await refusal(openChannel(s, "e"));
  expect([err.code, err.ref, err.message]).toEqual([
    "limit",
    "e",
    "4 data channels of this session are open; no more now",
  ]);
  expect(s.host.ch.of("incoming")).toHaveLength(4);
});

test("channels and streams, and a channel's lapsing, are not activity: only bytes moved keep a session from idling out", async () => {
  const idleTimeoutMs = 60_000;
  w = await World.open({ idleTimeoutMs, streamTokenTtlMs: 50 });
  const s = await w.session();
  const session = w.broker.sessions.all.get(s.sessionId)!;
  const since = session.lastActive;
  // Opens that come later than the session's last activity; the channel lapses unconnected.
  await until(() => Date.now() > since, "the clock to move past the session's start");
  const ch = await w.channel(s, "a");
  await w.stream(s, ch.streamId, [1, 2, 3]);
  await until(() => w.broker.counts.pendingStreams === 0, "the channel lapsing");
  expect(session.lastActive).toBe(since);
  w.broker.revalidate(since + idleTimeoutMs);
  expect(w.one("session.idle")).toMatchObject({ sessionId: s.sessionId });
  expect((await s.guest.ch.wait("closed")).reason).toBe("idle for 1 minute");
});

test("metrics: a channel waiting to connect is tessera_streams_pending and tessera_channels_open, not a stream; its streams are tessera_streams_active", async () => {
  w = await World.open({ streamTokenTtlMs: 60_000 });
  const s = await w.session();
  const ch = await w.channel(s, "a");
  let text = renderMetrics(w.broker.counts);
  expect(text).toContain("\ntessera_streams_pending 1\n");
  expect(text).toContain("\ntessera_channels_open 1\n");
  expect(text).toContain("\ntessera_streams_active 0\n");
  await w.stream(s, ch.streamId, [1, 2, 3]);
  text = renderMetrics(w.broker.counts);
  expect(text).toContain("\ntessera_streams_active 3\n");
  expect(text).toContain("\ntessera_channels_open 1\n");
});
