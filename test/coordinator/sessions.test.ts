// In-process tests of the session rules (open streams, resume, end, revoke, grace sweep) against a real Broker.
import { afterEach, describe, expect, test } from "bun:test";
import { refusal, TARGET, until, World } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

describe("streams", () => {
  test("channel: the guest gets a token, the agent a different one for the same channel; no stream.open line, no stream counted", async () => {
    w = await World.open();
    const s = await w.session();
    const ch = await w.channel(s, "r1");
    const inc = await s.host.ch.wait("incoming", (f) => f.streamId === ch.streamId);
    expect(ch).toMatchObject({ sessionId: s.sessionId, ref: "r1" });
    expect(ch.streamId).toStartWith("c-");
    expect(inc).toMatchObject({ sessionId: s.sessionId, channel: true });
    expect([typeof inc.token, typeof ch.token]).toEqual(["string", "string"]);
    expect(inc.token).not.toBe(ch.token);
    // A channel is a connection, not a stream: the log and the session's count know only its streams.
    expect(w.names()).not.toContain("stream.open");
    expect(w.broker.sessions.all.get(s.sessionId)!.streamCount).toBe(0);
  });

  test("a stream on the channel is audited durably before the agent hears it (no token); the guest hears nothing", async () => {
    w = await World.open();
    const s = await w.session();
    const ch = await w.channel(s);
    const guestFrames = s.guest.ch.frames.length;
    const [inc] = await w.stream(s, ch.streamId, [7]);
    // The agent's word comes after the line is on disk: it is there when the frame is.
    expect(w.one("stream.open")).toMatchObject({ sessionId: s.sessionId, streamId: inc!.streamId, path: "relay" });
    expect(inc).toMatchObject({ sessionId: s.sessionId, via: ch.streamId, mux: 7 });
    expect(inc!.streamId).toStartWith("t-");
    expect(inc!.token).toBeUndefined();
    expect(inc!.reportMs).toBeGreaterThan(0);
    expect(s.guest.ch.frames.length).toBe(guestFrames);
    expect(s.guest.ch.errors).toEqual([]);
    expect(w.broker.sessions.all.get(s.sessionId)!.streamCount).toBe(1);
  });

  test("a stream on a channel that is not open (unknown, or another session's) is refused no_channel, naming REF.N", async () => {
    w = await World.open();
    const s = await w.session();
    const other = await w.session(s.host, "bob");
    const theirs = await w.channel(other);
    expect(await w.stream(s, theirs.streamId, [1, 2], "x")).toEqual([]);
    expect(s.guest.ch.errors.map((e) => [e.code, e.ref])).toEqual([
      ["no_channel", "x.1"],
      ["no_channel", "x.2"],
    ]);
    expect(await w.stream(s, "c-nope", [3], "y")).toEqual([]);
    expect(s.guest.ch.errorFor("y.3")?.code).toBe("no_channel");
    expect(w.names()).not.toContain("stream.open");
    expect(s.host.ch.of("incoming").filter((f) => f.mux !== undefined)).toEqual([]);
  });

  test("another guest cannot open a channel or streams on a session it does not own: no_session with its ref, nothing reaches the agent", async () => {
    w = await World.open();
    const s = await w.session();
    const ch = await w.channel(s);
    const mallory = await w.session(s.host, "mallory");
    const incoming = s.host.ch.of("incoming").length;
    const err = await refusal(w.send(mallory.guest, { t: "open", sessionId: s.sessionId, ref: "x", channel: true }));
    expect([err.code, err.ref]).toEqual(["no_session", "x"]);
    // Ids are not capabilities: an unknown id gets the very same answer.
    const unknown = await refusal(w.send(mallory.guest, { t: "open", sessionId: "s-nope", ref: "y", channel: true }));
    expect([unknown.code, unknown.message.replace("s-nope", s.sessionId)]).toEqual([err.code, err.message]);
    // Knowing the channel's id is no more use: the whole frame is refused, with the ref as given.
    const via = await refusal(
      w.send(mallory.guest, { t: "open", sessionId: s.sessionId, ref: "z", via: ch.streamId, mux: [1, 2] }),
    );
    expect([via.code, via.ref]).toEqual(["no_session", "z"]);
    expect(mallory.guest.ch.errors).toEqual([]);
    expect(s.host.ch.of("incoming")).toHaveLength(incoming);
    expect(w.names()).not.toContain("stream.open");
  });

  test("an open that asks for neither a channel nor streams is refused 'version', naming its ref", async () => {
    w = await World.open();
    const s = await w.session();
    const err = await refusal(w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "old" }));
    expect([err.code, err.ref]).toEqual(["version", "old"]);
    expect(s.host.ch.of("incoming")).toEqual([]);
  });

  test("maxStreamsPerSession (the channel among them): the streams past the cap are refused 'limit', each naming REF.N, the rest go on", async () => {
    w = await World.open({ maxStreamsPerSession: 3 });
    const s = await w.session();
    const ch = await w.channel(s);
    const through = await w.stream(s, ch.streamId, [1, 2, 3, 4], "a");
    expect(through.map((f) => f.mux)).toEqual([1, 2]);
    expect(s.guest.ch.errors.map((e) => [e.code, e.ref])).toEqual([
      ["limit", "a.3"],
      ["limit", "a.4"],
    ]);
    expect(w.events().filter((e) => e.event === "stream.open")).toHaveLength(2);
    expect(w.broker.counts.streams).toBe(3);
    // One ends (the agent's word): its place is free again.
    await w.report(s, { streamId: through[0]!.streamId, state: "closed", up: 1, down: 2 });
    expect((await w.stream(s, ch.streamId, [5], "b")).map((f) => f.mux)).toEqual([5]);
  });

  test("the agent's word ends a stream: a report with a reason, or a refusal, is told to the guest and closes its line", async () => {
    w = await World.open();
    const s = await w.session();
    const ch = await w.channel(s);
    const [a, b, c] = await w.stream(s, ch.streamId, [1, 2, 3]);
    // Closed without a reason: no word to the guest; its counts are the line's.
    await w.report(s, { streamId: a!.streamId, state: "closed", up: 7, down: 8 });
    await w.report(s, { streamId: b!.streamId, state: "failed", reason: "connection refused" });
    await w.send(s.host, { t: "refuse", sessionId: s.sessionId, streamId: c!.streamId, reason: "not allowed" });
    await until(() => w.events().filter((e) => e.event === "stream.close").length === 3, "three close lines");
    const lines = w.events().filter((e) => e.event === "stream.close");
    expect(lines.map((e) => [e.streamId, e.bytesUp, e.bytesDown, e.reason])).toEqual([
      [a!.streamId, 7, 8, "closed"],
      [b!.streamId, 0, 0, "connection refused"],
      [c!.streamId, 0, 0, "the host refused the stream: not allowed"],
    ]);
    expect(s.guest.ch.of("refused").map((f) => [f.streamId, f.reason])).toEqual([
      [b!.streamId, "connection refused"],
      [c!.streamId, "not allowed"],
    ]);
    // The channel stays for the next streams; the session's count is of streams only.
    expect(w.broker.counts).toMatchObject({ streams: 1, channels: 1 });
    expect(w.broker.sessions.all.get(s.sessionId)!.streamCount).toBe(3);
  });

  test("open while the agent is away is host_offline; the agent's drop cuts the channel and its streams", async () => {
    w = await World.open();
    const s = await w.session();
    const ch = await w.channel(s);
    const [inc] = await w.stream(s, ch.streamId);
    w.broker.drop(s.host);
    await until(() => w.names().includes("stream.close"), "the cut stream's close line");
    expect(w.one("stream.close")).toMatchObject({ streamId: inc!.streamId });
    expect(w.broker.counts.streams).toBe(0);
    const err = await refusal(w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "b", channel: true }));
    expect([err.code, err.ref]).toEqual(["host_offline", "b"]);
    // A stream on the old channel: each id is answered (the agent is away, and the channel with it).
    await w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "c", via: ch.streamId, mux: [1] });
    expect(s.guest.ch.errorFor("c.1")?.code).toBe("host_offline");
    expect(w.events().filter((e) => e.event === "stream.open")).toHaveLength(1);
  });

  test("a channel that ends before it was set up (its agent went) is said to the guest with its ref, so it asks again", async () => {
    w = await World.open();
    const s = await w.session();
    const ch = await w.channel(s, "k1");
    expect(s.guest.ch.errorFor("k1")).toBeUndefined();
    w.broker.drop(s.host);
    await until(() => s.guest.ch.errorFor("k1") !== undefined, "the guest told its channel will not come");
    expect(s.guest.ch.errorFor("k1")).toMatchObject({ code: "no_channel" });
    expect(ch.streamId).toMatch(/^c-/);
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
    await w.send(back, { t: "open", sessionId: s.sessionId, ref: "r", channel: true });
    await back.ch.wait("stream", (f) => f.ref === "r");
  });

  test("the guest's drop cuts its channel and streams: after a resume, the old channel carries nothing, a new one does", async () => {
    w = await World.open();
    const s = await w.session();
    const old = await w.channel(s);
    const [inc] = await w.stream(s, old.streamId);
    w.broker.drop(s.guest);
    // Cut here at once; its line takes the agent's final counts.
    await w.report(s, { streamId: inc!.streamId, state: "closed", up: 5, down: 6 });
    expect(w.one("stream.close")).toMatchObject({ streamId: inc!.streamId, bytesUp: 5, bytesDown: 6 });
    const back = await w.returning(s.cert);
    await w.send(back, { t: "resume", sessionId: s.sessionId });
    const again = { ...s, guest: back };
    expect(await w.stream(again, old.streamId, [2], "o")).toEqual([]);
    expect(back.ch.errorFor("o.2")?.code).toBe("no_channel");
    const ch = await w.channel(again);
    expect((await w.stream(again, ch.streamId, [2])).map((f) => f.mux)).toEqual([2]);
  });

  test("resuming on a second connection replaces the first, which is failed with 'replaced'", async () => {
    w = await World.open();
    const s = await w.session();
    const back = await w.returning(s.cert);
    await w.send(back, { t: "resume", sessionId: s.sessionId });
    expect(s.guest.ch.failures.map((e) => e.code)).toEqual(["replaced"]);
    const old = await refusal(w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "old", channel: true }));
    expect(old.code).toBe("no_session");
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
    const ch = await w.channel(s);
    const [inc] = await w.stream(s, ch.streamId);
    await w.report(s, { streamId: inc!.streamId, state: "open", up: 3, down: 4 });
    expect(w.broker.revoke(s.sessionId, "ops")).toBe(true);
    const closed = { t: "closed" as const, sessionId: s.sessionId, reason: "revoked by the operator" };
    expect(await s.guest.ch.wait("closed")).toEqual(closed);
    expect(await s.host.ch.wait("closed")).toEqual(closed);
    const names = w.names();
    expect(names.indexOf("revoke")).toBeGreaterThan(-1);
    expect(w.one("revoke")).toMatchObject({ sessionId: s.sessionId, by: "ops" });
    // The stream is cut at once; its line (and so the session's) waits for the agent's final counts.
    expect(names).not.toContain("session.close");
    await w.report(s, { streamId: inc!.streamId, state: "closed", up: 30, down: 40 });
    expect(w.one("stream.close")).toMatchObject({
      streamId: inc!.streamId,
      bytesUp: 30,
      bytesDown: 40,
      reason: "revoked by the operator",
    });
    const after = w.names();
    expect(after.indexOf("session.close")).toBeGreaterThan(after.indexOf("revoke"));
    expect(w.one("session.close")).toMatchObject({
      sessionId: s.sessionId,
      reason: "revoked by the operator",
      streams: 1,
      bytesUp: 30,
      bytesDown: 40,
    });
    expect(w.broker.counts.sessions).toBe(0);
    // The channel is left a moment for the last bytes of streams already over, then cut.
    await until(() => w.broker.counts.streams === 0, "the channel's cut");
    const again = await refusal(w.send(s.guest, { t: "open", sessionId: s.sessionId, ref: "r2", channel: true }));
    expect(again.code).toBe("no_session");
    await until(async () => (await w.store.openSessions()).length === 0, "the store to close the session");
    expect(w.broker.revoke(s.sessionId, "ops")).toBe(false);
  });

  test("the agent's word on a session that just ended here (a refusal, a report) is taken quietly; anyone else's is no_session", async () => {
    w = await World.open();
    const s = await w.session();
    const ch = await w.channel(s);
    const other = await w.session(s.host, "bob");
    await w.send(s.guest, { t: "end", sessionId: s.sessionId });
    // Sent before the agent heard: an error frame without a ref would fail whatever it has in flight.
    await w.send(s.host, { t: "refuse", sessionId: s.sessionId, streamId: ch.streamId, reason: "no such session" });
    await w.report(s, { streamId: ch.streamId, state: "closed", up: 1, down: 1 });
    // Another agent, or a guest, saying the same is refused as before.
    const stranger = await w.agent("other", [TARGET], "box2");
    const refused = await refusal(
      w.send(stranger, { t: "refuse", sessionId: s.sessionId, streamId: ch.streamId, reason: "x" }),
    );
    expect(refused.code).toBe("no_session");
    expect((await refusal(w.report(s, { streamId: ch.streamId, state: "failed" }, other.guest))).code).toBe(
      "no_session",
    );
    expect(w.names().filter((n) => n.startsWith("stream."))).toEqual([]);
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
