// In-process tests of scoped answers at the coordinator: y 1, y 15m, n REASON, and a scope that outlives
// a restart, against a real Broker with fake peers.
import { afterEach, expect, test } from "bun:test";
import { refusal, World } from "./fake-peers.ts";

let w: World | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

async function scoped(world: World, scope: { ttlMs?: number; streams?: number }) {
  const host = await world.agent();
  const g = await world.guest("alice");
  const requestId = await world.redeem(g, await world.mint(host));
  await world.confirmed(host, g, requestId);
  await world.send(host, { t: "decision", requestId, allow: true, scope });
  const ok = await g.peer.ch.wait("approved", (f) => f.requestId === requestId);
  return { host, guest: g.peer, sessionId: ok.sessionId, cert: ok.cert, requestId, approved: ok };
}

test("y 1: the guest and the agent are told the scope; the channel is not the connection, a second stream is refused with the reason", async () => {
  w = await World.open();
  const s = await scoped(w, { streams: 1 });
  expect(s.approved.scope).toEqual({ streams: 1 });
  const session = s.host.ch.of("session").at(-1)!;
  expect(session.scope).toEqual({ streams: 1 });
  expect(typeof session.openedAt).toBe("number");
  expect(w.one("approve").scope).toBe("one connection");
  // The channel carries the connection; it is not one.
  const ch = await w.channel(s);
  // Two in one frame: the first is the one connection, the second is refused on its own, naming REF.2.
  const through = await w.stream(s, ch.streamId, [1, 2], "a");
  expect(through.map((f) => f.mux)).toEqual([1]);
  expect(s.guest.ch.errors).toEqual([
    { code: "limit", message: "the host allowed one connection in this session, and it is used", ref: "a.2" },
  ]);
  expect(w.events().filter((e) => e.event === "stream.open")).toHaveLength(1);
  // A second channel opens no second connection either.
  await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "c2", channel: true });
  const again = await s.guest.ch.wait("stream", (f) => f.ref === "c2");
  expect(await w.stream(s, again.streamId, [3], "b")).toEqual([]);
  expect(s.guest.ch.errorFor("b.3")?.code).toBe("limit");
  // The one connection ends (the agent's word): so does the session, whose channels do not count.
  await w.report(s, { streamId: through[0]!.streamId, state: "closed", up: 1, down: 1 });
  expect((await s.guest.ch.wait("closed")).reason).toBe("the host allowed one connection, and it has closed");
  expect(w.one("session.close")).toMatchObject({ condition: "scope", streams: 1 });
});

test("y 2s: the session ends when its time is over, busy or not, saying so", async () => {
  w = await World.open();
  const s = await scoped(w, { ttlMs: 2000 });
  const session = w.broker.sessions.all.get(s.sessionId)!;
  w.broker.revalidate(session.openedAt + 1999);
  expect(w.broker.sessions.all.has(s.sessionId)).toBe(true);
  w.broker.revalidate(session.openedAt + 2000);
  expect((await s.guest.ch.wait("closed")).reason).toBe("the host allowed this session 2s, and that is over");
  expect(w.one("session.close")).toMatchObject({ condition: "scope" });
});

test("n REASON: the guest hears the host's words; the audit line keeps them", async () => {
  w = await World.open();
  const host = await w.agent();
  const g = await w.guest("bob");
  const requestId = await w.redeem(g, await w.mint(host));
  await w.send(host, { t: "decision", requestId, allow: false, reason: "too busy" });
  expect((await g.peer.ch.wait("denied")).reason).toBe("the host declined: too busy");
  expect(w.one("deny")).toMatchObject({ requestId, reason: "too busy" });
});

test("a scope outlives a coordinator restart, and the agent is told it again", async () => {
  w = await World.open();
  const s = await scoped(w, { streams: 1, ttlMs: 60_000 });
  await w.restart();
  const restored = w.broker.sessions.all.get(s.sessionId)!;
  expect(restored.scope).toEqual({ streams: 1, ttlMs: 60_000 });
});

test("a decision whose signed receipt says something else is refused; a matching one is kept in the audit line", async () => {
  const { exportPrivateKeyPem, generateKeyPair } = await import("../../src/pki/index.ts");
  const { signReceipt } = await import("../../src/wire/receipt.ts");
  w = await World.open();
  const host = await w.agent();
  const g = await w.guest("cy");
  const requestId = await w.redeem(g, await w.mint(host));
  await w.confirmed(host, g, requestId);
  const ask = host.ch.of("ask").at(-1)!;
  // Signed by a key that is not the share's host: refused, and the request still waits.
  const stranger = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  const forged = signReceipt(stranger, {
    requestId,
    shareId: ask.shareId,
    guestKey: ask.guest.spki,
    target: ask.target,
    decision: "allow",
    at: Date.now(),
  });
  const err = await refusal(w.send(host, { t: "decision", requestId, allow: true, receipt: forged }));
  expect(err.code).toBe("bad_receipt");
  expect(err.message).toMatch(
    /^this decision's signed receipt does not match it: it is signed by SHA256:\S+, not by the host's key /,
  );
  expect(w.names()).not.toContain("approve");
});
