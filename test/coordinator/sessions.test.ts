// In-process tests of the session rules (open streams, resume, end, revoke, grace sweep) against a real Broker.
import { afterEach, describe, expect, test } from "bun:test";
import { refusal, until, World } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

describe("streams", () => {
  test("open: the guest gets a stream token, the agent a different one for the same stream, audited stream.open", async () => {
    w = await World.open();
    const s = await w.session();
    await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "r1" });
    const st = await s.guest.ch.wait("stream");
    const inc = await s.host.ch.wait("incoming");
    expect(st).toMatchObject({ sessionId: s.sessionId, ref: "r1" });
    expect(inc).toMatchObject({ sessionId: s.sessionId, streamId: st.streamId });
    expect(inc.token).not.toBe(st.token);
    expect(w.one("stream.open")).toMatchObject({ sessionId: s.sessionId, streamId: st.streamId });
  });

  test("another guest cannot open streams on a session it does not own: no_session, nothing reaches the agent", async () => {
    w = await World.open();
    const s = await w.session();
    const mallory = await w.session(s.host, "mallory");
    const err = await refusal(w.send(mallory.guest, { t: "open", sessionId: s.sessionId, ref: "x" }));
    expect(err.code).toBe("no_session");
    expect(err.ref).toBe("x");
    // Ids are not capabilities: an unknown id gets the very same answer.
    const unknown = await refusal(w.send(mallory.guest, { t: "open", sessionId: "s-nope", ref: "y" }));
    expect([unknown.code, unknown.message.replace("s-nope", s.sessionId)]).toEqual([err.code, err.message]);
    expect(s.host.ch.of("incoming")).toEqual([]);
    expect(w.names()).not.toContain("stream.open");
  });

  test("maxStreamsPerSession: the stream past the cap is refused 'limit' with its ref", async () => {
    w = await World.open({ maxStreamsPerSession: 2 });
    const s = await w.session();
    await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "a" });
    await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "b" });
    const err = await refusal(w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "c" }));
    expect([err.code, err.ref]).toEqual(["limit", "c"]);
    expect(s.host.ch.of("incoming")).toHaveLength(2);
    expect(w.broker.counts.streams).toBe(2);
  });

  test("open while the agent is away is host_offline; the agent's drop cuts live streams", async () => {
    w = await World.open();
    const s = await w.session();
    await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "a" });
    w.broker.drop(s.host);
    await until(() => w.names().includes("stream.close"), "the cut stream's close line");
    expect(w.broker.counts.streams).toBe(0);
    expect((await refusal(w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "b" }))).code).toBe("host_offline");
  });
});

describe("resume", () => {
  test("a detached guest resumes with its own certificate; audit session.detach then session.resume", async () => {
    w = await World.open();
    const s = await w.session();
    w.broker.drop(s.guest);
    expect(w.one("session.detach")).toMatchObject({ sessionId: s.sessionId });
    const back = await w.returning(s.cert);
    await w.send(back, { t: "resume", sessionId: s.sessionId });
    expect(await back.ch.wait("resumed")).toMatchObject({ sessionId: s.sessionId, restarted: false, hostOnline: true });
    expect(w.one("session.resume")).toMatchObject({ sessionId: s.sessionId, addr: back.addr });
    await w.send(back, { t: "open", sessionId: s.sessionId, ref: "r" });
    await back.ch.wait("stream");
  });

  test("resuming on a second connection replaces the first, which is failed with 'replaced'", async () => {
    w = await World.open();
    const s = await w.session();
    const back = await w.returning(s.cert);
    await w.send(back, { t: "resume", sessionId: s.sessionId });
    expect(s.guest.ch.failures.map((e) => e.code)).toEqual(["replaced"]);
    expect((await refusal(w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "old" }))).code).toBe("no_session");
  });

  test("resume needs the certificate issued for that session: another guest's, or none, is no_session", async () => {
    w = await World.open();
    const s = await w.session();
    const other = await w.session(s.host, "mallory");
    w.broker.drop(s.guest);
    const withOtherCert = await w.returning(other.cert);
    expect((await refusal(w.send(withOtherCert, { t: "resume", sessionId: s.sessionId }))).code).toBe("no_session");
    // A certificate naming the session but holding another key (the spki check, not just the session id).
    const wrongKey = await w.hello(w.peer({ guest: { sessionId: s.sessionId, spki: withOtherCert.guest!.spki } }));
    expect((await refusal(w.send(wrongKey, { t: "resume", sessionId: s.sessionId }))).code).toBe("no_session");
    const noCert = await w.hello(w.peer());
    expect((await refusal(w.send(noCert, { t: "resume", sessionId: s.sessionId }))).code).toBe("no_session");
    expect(w.names()).not.toContain("session.resume");
  });

  test("a guest that does not come back within the grace period loses its session", async () => {
    w = await World.open({ resumeGraceMs: 100 });
    const s = await w.session();
    w.broker.drop(s.guest);
    expect(await s.host.ch.wait("closed")).toEqual({
      t: "closed",
      sessionId: s.sessionId,
      reason: "the guest disconnected",
    });
    const back = await w.returning(s.cert);
    expect((await refusal(w.send(back, { t: "resume", sessionId: s.sessionId }))).code).toBe("no_session");
  });
});

describe("ending", () => {
  test("operator revoke: both sides get 'closed', audit revoke then session.close, the store forgets the session", async () => {
    w = await World.open();
    const s = await w.session();
    await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "r" });
    expect(w.broker.revoke(s.sessionId, "ops")).toBe(true);
    const closed = { t: "closed" as const, sessionId: s.sessionId, reason: "revoked by the operator" };
    expect(await s.guest.ch.wait("closed")).toEqual(closed);
    expect(await s.host.ch.wait("closed")).toEqual(closed);
    const names = w.names();
    expect(names.indexOf("revoke")).toBeGreaterThan(-1);
    expect(names.indexOf("session.close")).toBeGreaterThan(names.indexOf("revoke"));
    expect(w.one("revoke")).toMatchObject({ sessionId: s.sessionId, by: "ops" });
    expect(w.one("session.close")).toMatchObject({
      sessionId: s.sessionId,
      reason: "revoked by the operator",
      streams: 1,
    });
    expect(w.broker.counts).toMatchObject({ sessions: 0, streams: 0 });
    expect((await refusal(w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "r2" }))).code).toBe("no_session");
    await until(async () => (await w.store.openSessions()).length === 0, "the store to close the session");
    expect(w.broker.revoke(s.sessionId, "ops")).toBe(false);
  });

  test("end: the guest or the host may end a session, a stranger may not", async () => {
    w = await World.open();
    const a = await w.session();
    const b = await w.session(a.host, "bob");
    expect((await refusal(w.send(b.guest, { t: "end", sessionId: a.sessionId }))).code).toBe("no_session");
    expect(a.guest.ch.of("closed")).toEqual([]);
    await w.send(a.guest, { t: "end", sessionId: a.sessionId });
    expect((await a.host.ch.wait("closed", (f) => f.sessionId === a.sessionId)).reason).toBe(
      "the guest ended the session",
    );
    await w.send(a.host, { t: "end", sessionId: b.sessionId });
    expect((await b.guest.ch.wait("closed")).reason).toBe("the host ended the session");
    expect(w.broker.counts.sessions).toBe(0);
  });
});
