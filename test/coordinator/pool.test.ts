// In-process tests of pooled streams at the coordinator (join --pool): spares are opened ahead of need
// but audited, counted and served only at their "use", against a real Broker with fake peers.
import { afterEach, expect, test } from "bun:test";
import { refusal, until, World } from "./fake-peers.ts";

let w: World | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

async function pooled(
  world: World,
  s: { guest: Parameters<World["send"]>[0]; host: Parameters<World["send"]>[0]; sessionId: string },
  ref: string,
) {
  await world.send(s.guest, { t: "open", sessionId: s.sessionId, ref, pool: true });
  const st = await s.guest.ch.wait("stream", (f) => f.ref === ref);
  const inc = await s.host.ch.wait("incoming", (f) => f.streamId === st.streamId);
  return { st, inc };
}

test("a pooled open writes no audit line and counts no stream; the agent is told it is pooled", async () => {
  w = await World.open();
  const s = await w.session();
  const { inc } = await pooled(w, s, "p1");
  expect(inc.pool).toBe(true);
  expect(w.names()).not.toContain("stream.open");
  const session = w.broker.sessions.all.get(s.sessionId)!;
  expect(session.streamCount).toBe(0);
  expect(w.broker.counts.streams).toBe(1);
});

test("use: stream.open (pooled) is on disk before the agent hears 'use'; a second use of it is refused", async () => {
  w = await World.open();
  const s = await w.session();
  const { st } = await pooled(w, s, "p1");
  await w.send(s.guest, { t: "use", sessionId: s.sessionId, streamId: st.streamId, ref: "u1" });
  const use = await s.host.ch.wait("use");
  expect(use).toEqual({ t: "use", sessionId: s.sessionId, streamId: st.streamId });
  // The line was appended durably before the frame went out: it is in the file already.
  expect(w.one("stream.open")).toMatchObject({ sessionId: s.sessionId, streamId: st.streamId, pooled: true });
  expect(w.broker.sessions.all.get(s.sessionId)!.streamCount).toBe(1);
  const again = await refusal(w.send(s.guest, { t: "use", sessionId: s.sessionId, streamId: st.streamId, ref: "u2" }));
  expect([again.code, again.ref]).toEqual(["stream", "u2"]);
  expect(s.host.ch.of("use")).toHaveLength(1);
});

test("another guest cannot use someone's pooled stream; an unknown stream id is refused the same way", async () => {
  w = await World.open();
  const s = await w.session();
  const mallory = await w.session(s.host, "mallory");
  const { st } = await pooled(w, s, "p1");
  const err = await refusal(
    w.send(mallory.guest, { t: "use", sessionId: s.sessionId, streamId: st.streamId, ref: "x" }),
  );
  expect(err.code).toBe("no_session");
  const other = await refusal(
    w.send(mallory.guest, { t: "use", sessionId: mallory.sessionId, streamId: st.streamId, ref: "y" }),
  );
  expect(other.code).toBe("stream");
  // A plain stream is not a spare either.
  await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "o" });
  const plain = await s.guest.ch.wait("stream", (f) => f.ref === "o");
  expect(
    (await refusal(w.send(s.guest, { t: "use", sessionId: s.sessionId, streamId: plain.streamId, ref: "z" }))).code,
  ).toBe("stream");
  expect(s.host.ch.of("use")).toEqual([]);
  expect(w.names().filter((n) => n === "stream.open")).toHaveLength(1);
});

test("a spare that ends unused leaves no close line and adds nothing to the session's bytes", async () => {
  w = await World.open();
  const s = await w.session();
  await pooled(w, s, "p1");
  await pooled(w, s, "p2");
  w.broker.sessions.revoke(s.sessionId, "test");
  await until(() => w!.names().includes("session.close"), "the session's close");
  expect(w.names()).not.toContain("stream.close");
  expect(w.one("session.close")).toMatchObject({ streams: 0, bytesUp: 0, bytesDown: 0 });
  expect(w.broker.counts.streams).toBe(0);
});

test("y 1: spares do not count; the used one does, a second use is refused, and the session ends when the used one closes", async () => {
  w = await World.open();
  const host = await w.agent();
  const g = await w.guest("alice");
  const requestId = await w.redeem(g, await w.mint(host));
  await w.confirmed(host, g, requestId);
  await w.send(host, { t: "decision", requestId, allow: true, scope: { streams: 1 } });
  const ok = await g.peer.ch.wait("approved");
  const s = { host, guest: g.peer, sessionId: ok.sessionId };
  const a = await pooled(w, s, "p1");
  const b = await pooled(w, s, "p2");
  await w.send(s.guest, { t: "use", sessionId: s.sessionId, streamId: a.st.streamId, ref: "u1" });
  await s.host.ch.wait("use");
  const second = await refusal(
    w.send(s.guest, { t: "use", sessionId: s.sessionId, streamId: b.st.streamId, ref: "u2" }),
  );
  expect(second.message).toBe("the host allowed one connection in this session, and it is used");
  const session = w.broker.sessions.all.get(s.sessionId)!;
  const used = [...session.streams].find((st) => st.id === a.st.streamId)!;
  w.broker.sessions.splicer.end(used, "closed");
  expect((await s.guest.ch.wait("closed")).reason).toContain("the host allowed one connection");
});

test("spares are refused while the coordinator has no room for them; a stream in use is not", async () => {
  w = await World.open();
  const s = await w.session();
  w.broker.sessions.roomForSpares = () => false;
  const err = await refusal(w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "p", pool: true }));
  expect([err.code, err.ref]).toEqual(["limit", "p"]);
  expect(err.message).toContain("no spare streams now");
  await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "o" });
  expect(await s.guest.ch.wait("stream", (f) => f.ref === "o")).toBeDefined();
});
