// In-process tests of streams offered but never connected: they count against the caps until their token
// lapses, they are not activity for the idle timeout, and the metrics tell them apart from live streams.
import { afterEach, expect, test } from "bun:test";
import { renderMetrics } from "../../src/coordinator/metrics.ts";
import { refusal, until, World } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

const lapsed = () =>
  w.events().filter((e) => e.event === "stream.close" && e.reason === "stream was not picked up in time").length;

test("maxPendingStreamsPerSession: opens nobody connects count until their tokens lapse, then free their places", async () => {
  w = await World.open({ maxPendingStreamsPerSession: 2, streamTokenTtlMs: 100 });
  const s = await w.session();
  await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "a" });
  await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "b" });
  const err = await refusal(w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "c" }));
  expect([err.code, err.ref]).toEqual(["limit", "c"]);
  expect(err.message).toContain("2 streams of this session are still waiting to connect");
  expect(s.host.ch.of("incoming")).toHaveLength(2);
  expect(w.broker.counts).toMatchObject({ streams: 2, pendingStreams: 2 });
  await until(() => lapsed() === 2, "both streams lapsing");
  expect(w.broker.counts).toMatchObject({ streams: 0, pendingStreams: 0 });
  await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "d" });
  expect((await s.guest.ch.wait("stream", (f) => f.ref === "d")).sessionId).toBe(s.sessionId);
});

test("maxStreamsPerSession counts unconnected opens too, until they lapse", async () => {
  w = await World.open({ maxStreamsPerSession: 2, streamTokenTtlMs: 100 });
  const s = await w.session();
  for (const ref of ["a", "b"]) await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref });
  expect((await refusal(w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "c" }))).code).toBe("limit");
  await until(() => lapsed() === 2, "both streams lapsing");
  await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "d" });
  await s.guest.ch.wait("stream", (f) => f.ref === "d");
});

test("opens, and their lapsing, are not activity: only bytes moved keep a session from idling out", async () => {
  const idleTimeoutMs = 60_000;
  w = await World.open({ idleTimeoutMs, streamTokenTtlMs: 50 });
  const s = await w.session();
  const session = w.broker.sessions.all.get(s.sessionId)!;
  const since = session.lastActive;
  // Opens that come later than the session's last activity, and lapse unconnected.
  await until(() => Date.now() > since, "the clock to move past the session's start");
  for (const ref of ["a", "b", "c"]) await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref });
  await until(() => lapsed() === 3, "the streams lapsing");
  expect(session.lastActive).toBe(since);
  w.broker.revalidate(since + idleTimeoutMs);
  expect(w.one("session.idle")).toMatchObject({ sessionId: s.sessionId });
  expect((await s.guest.ch.wait("closed")).reason).toBe("idle for 1 minute");
});

test("metrics: streams waiting to connect are tessera_streams_pending, not tessera_streams_active", async () => {
  w = await World.open({ streamTokenTtlMs: 60_000 });
  const s = await w.session();
  for (const ref of ["a", "b", "c"]) await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref });
  const text = renderMetrics(w.broker.counts);
  expect(text).toContain("\ntessera_streams_pending 3\n");
  expect(text).toContain("\ntessera_streams_active 0\n");
});
