// In-process tests of the broker's own rules (hello, enroll, register, attach, mint, leave, drop, restore) against a real Broker.
import { Broker } from "../../src/coordinator/broker.ts";
import { afterEach, describe, expect, test } from "bun:test";
import { LIMITS } from "../../src/coordinator/limits.ts";
import { ProtocolError } from "../../src/errors.ts";
import { createCsr, generateKeyPair } from "../../src/pki/index.ts";
import { PROTOCOL_VERSION } from "../../src/wire/protocol.ts";
import { refusal, TARGET, until, World } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

describe("hello", () => {
  test("nothing but hello is accepted first; hello answers with the CA", async () => {
    w = await World.open();
    const p = w.peer();
    const err = await refusal(w.send(p, { t: "ping" }));
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.code).toBe("protocol");
    expect(p.ch.frames).toEqual([]);
    await w.hello(p);
    expect(p.ch.frames).toEqual([
      {
        t: "welcome",
        v: PROTOCOL_VERSION,
        server: "test",
        ca: w.ca.certPem,
        heartbeat: { pingMs: LIMITS.heartbeatPingMs, deadMs: LIMITS.heartbeatDeadMs },
      },
    ]);
    await w.send(p, { t: "ping" });
    expect(p.ch.frames.at(-1)).toEqual({ t: "pong" });
  });

  test("another protocol version is refused with code 'version', and the peer stays un-helloed", async () => {
    w = await World.open();
    const p = w.peer();
    const err = await refusal(w.send(p, { t: "hello", v: PROTOCOL_VERSION + 1, client: "future" }));
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.code).toBe("version");
    expect(p.helloed).toBe(false);
    expect((await refusal(w.send(p, { t: "ping" }))).code).toBe("protocol");
  });

  test("hello twice is a protocol error", async () => {
    w = await World.open();
    const p = await w.hello(w.peer());
    expect(await refusal(w.hello(p))).toBeInstanceOf(ProtocolError);
  });
});

describe("enroll and register", () => {
  test("an enrolment token works once; the store and audit know the host", async () => {
    w = await World.open();
    const token = w.enrollToken();
    const enroll = async (name: string) => {
      const p = await w.hello(w.peer());
      const csr = await createCsr({ keys: await generateKeyPair(), commonName: name });
      return w.send(p, { t: "enroll", token, csr, name });
    };
    await enroll("box");
    expect((await refusal(enroll("box2"))).code).toBe("token_used");
    const line = w.one("host.enrol");
    expect(line.host).toBe("box");
    expect(await w.store.hostExists(String(line.hostKey))).toBe(true);
    const fake = token.replace(/\.[A-Za-z0-9_-]{32}\./, `.${"x".repeat(32)}.`);
    expect(
      (await refusal(w.send(await w.hello(w.peer()), { t: "enroll", token: fake, csr: "-----BEGIN x", name: "y" })))
        .code,
    ).toBe("bad_token");
  });

  test("only an enrolled host may register, and a share id belongs to the host that took it", async () => {
    w = await World.open();
    const guest = await w.hello(w.peer());
    expect(
      (await refusal(w.send(guest, { t: "register", shareId: "web", targets: [TARGET], approver: true }))).code,
    ).toBe("not_host");
    const agent = await w.agent();
    expect(w.one("share.open")).toMatchObject({ shareId: "web", host: "box" });
    const other = await w.host("other");
    expect(
      (await refusal(w.send(other, { t: "register", shareId: "web", targets: [TARGET], approver: true }))).code,
    ).toBe("share_taken");
    expect((await refusal(w.send(other, { t: "attach", shareId: "web" }))).code).toBe("no_share");
    const twin = await w.hello(w.peer({ host: agent.host }));
    expect(
      (await refusal(w.send(twin, { t: "register", shareId: "web", targets: [TARGET], approver: true }))).code,
    ).toBe("share_busy");
  });

  test("maxShares caps new shares", async () => {
    w = await World.open({ maxShares: 1 });
    const agent = await w.agent();
    expect(
      (await refusal(w.send(agent, { t: "register", shareId: "two", targets: [TARGET], approver: true }))).code,
    ).toBe("limit");
  });

  test("mint: only an approver of the share, only for a target it offers", async () => {
    w = await World.open();
    const agent = await w.agent();
    const stranger = await w.agent("other", [TARGET], "elsewhere");
    expect((await refusal(w.send(stranger, { t: "mint", shareId: "web" }))).code).toBe("forbidden");
    expect((await refusal(w.send(agent, { t: "mint", shareId: "web", target: "10.1.1.1:80" }))).code).toBe(
      "bad_target",
    );
    expect(agent.ch.of("code")).toEqual([]);
    const code = await w.mint(agent);
    expect(w.one("code.mint")).toMatchObject({ shareId: "web", target: TARGET });
    expect(JSON.stringify(w.events())).not.toContain(code);
  });
});

describe("code cap", () => {
  test("maxCodesPerShare caps the unused codes of a share, with a message naming the cap", async () => {
    w = await World.open({ maxCodesPerShare: 2 });
    const agent = await w.agent();
    await w.mint(agent);
    await w.mint(agent);
    const refused = await refusal(w.send(agent, { t: "mint", shareId: "web" }));
    expect(refused.code).toBe("limit");
    expect(refused.message).toContain("2 unused codes");
    expect(w.events().filter((e) => e.event === "code.mint")).toHaveLength(2);
  });
});

describe("agent away and back", () => {
  test("agent drop: share.away, pending requests end with the code given back, redeem says the host is reconnecting", async () => {
    w = await World.open();
    const agent = await w.agent();
    const waiting = await w.guest("early");
    const spent = await w.mint(agent);
    const requestId = await w.redeem(waiting, spent);
    const code = await w.mint(agent);
    w.broker.drop(agent);
    expect(w.one("share.away")).toMatchObject({ shareId: "web" });
    expect(await waiting.peer.ch.wait("denied")).toMatchObject({ requestId, reason: "the host went offline" });
    await until(async () => !(await w.codeUsed(spent)), "the withdrawn request's code to be released");

    const err = await refusal(w.redeem(await w.guest(), code));
    expect(err.code).toBe("code_offline");
    expect(err.message).toMatch(/reconnecting/);
    expect(await w.codeUsed(code)).toBe(false);

    const back = await w.hello(w.peer({ host: agent.host }));
    await w.send(back, { t: "register", shareId: "web", targets: [TARGET], approver: true });
    expect(w.one("share.back")).toMatchObject({ shareId: "web" });
    await w.redeem(await w.guest(), code);
    expect((await back.ch.wait("ask")).guest.name).toBe("alice");
  });

  test("a returning agent is told its sessions again; sessions for a target it dropped are closed", async () => {
    w = await World.open();
    const agent = await w.agent("web", [TARGET, "127.0.0.1:80"]);
    const keep = await w.session(agent, "keep");
    await w.send(agent, { t: "mint", shareId: "web", target: "127.0.0.1:80" });
    const g = await w.guest("gone");
    const rq = await w.redeem(g, agent.ch.of("code").at(-1)!.nameplate);
    await w.confirmed(agent, g, rq);
    await w.send(agent, { t: "decision", requestId: rq, allow: true });
    const gone = (await g.peer.ch.wait("approved")).sessionId;
    w.broker.drop(agent);
    const back = await w.hello(w.peer({ host: agent.host }));
    await w.send(back, { t: "register", shareId: "web", targets: [TARGET], approver: true });
    expect(back.ch.of("session").map((f) => f.sessionId)).toEqual([keep.sessionId]);
    expect(await g.peer.ch.wait("closed")).toEqual({
      t: "closed",
      sessionId: gone,
      reason: "the host no longer offers this target",
    });
  });

  test("an agent that stays away past the grace period closes its share and its sessions", async () => {
    w = await World.open({ resumeGraceMs: 100 });
    const s = await w.session();
    w.broker.drop(s.host);
    expect((await s.guest.ch.wait("closed")).reason).toBe("the host's agent disconnected");
    expect(w.one("share.close")).toMatchObject({ shareId: "web" });
    const names = w.names();
    expect(names.indexOf("session.close")).toBeLessThan(names.indexOf("share.close"));
  });

  test("leave from the agent closes the share: sessions closed, waiting guests denied with their codes back", async () => {
    w = await World.open();
    const s = await w.session();
    const g = await w.guest("late");
    const code = await w.mint(s.host);
    await w.redeem(g, code);
    await w.send(s.host, { t: "leave", shareId: "web" });
    expect(s.host.ch.frames.at(-1)).toEqual({ t: "left", shareId: "web" });
    expect((await s.guest.ch.wait("closed")).reason).toBe("the host stopped sharing");
    expect((await g.peer.ch.wait("denied")).reason).toBe("the host stopped sharing");
    expect(w.one("share.close")).toMatchObject({ shareId: "web" });
    await until(async () => !(await w.codeUsed(code)), "the code to be released");
    expect((await refusal(w.redeem(await w.guest(), code))).code).toBe("code_offline");
  });
});

describe("restart", () => {
  test("sessions survive a restart: the guest resumes (restarted), the agent re-registers and is told its session", async () => {
    w = await World.open();
    const s = await w.session();
    const waiting = await w.guest("waiting");
    const code = await w.mint(s.host);
    const requestId = await w.redeem(waiting, code);
    const restored = await w.restart();
    // Shutdown denies the waiting request and gives its code back before the store closes.
    expect(await waiting.peer.ch.wait("denied")).toMatchObject({ requestId });
    expect(await w.codeUsed(code)).toBe(false);
    expect(restored).toEqual({ shares: 1, sessions: 1, voided: 0 });

    const guest = await w.returning(s.cert);
    await w.send(guest, { t: "resume", sessionId: s.sessionId });
    expect(await guest.ch.wait("resumed")).toMatchObject({ restarted: true, hostOnline: false });
    const agent = await w.hello(w.peer({ host: s.host.host }));
    await w.send(agent, { t: "register", shareId: "web", targets: [TARGET], approver: true });
    expect((await agent.ch.wait("session")).sessionId).toBe(s.sessionId);
    const again = { ...s, guest, host: agent };
    const ch = await w.channel(again);
    expect((await agent.ch.wait("incoming", (f) => f.streamId === ch.streamId)).channel).toBe(true);
    const [inc] = await w.stream(again, ch.streamId, [1]);
    expect(inc).toMatchObject({ sessionId: s.sessionId, via: ch.streamId, mux: 1 });
  });

  test("a code whose PAKE ran is not given back by a restart, clean or crashed: it was one guess", async () => {
    w = await World.open();
    const agent = await w.agent();
    const g = await w.guest("guesser");
    const code = await w.mint(agent);
    const requestId = await w.redeem(g, code);
    await w.send(agent, { t: "pake", requestId, msg: "bXNn", hostSpki: agent.host!.spki });
    // A crash: a new broker restores from the store while the old one never shut down.
    const crashed = new Broker(w.options);
    expect(await crashed.restore()).toMatchObject({ voided: 1 });
    expect(await w.codeUsed(code)).toBe(true);
    const deny = w.events().find((e) => e.event === "deny" && e.requestId === requestId);
    expect(deny?.reason).toBe(
      "the coordinator restarted during the code check; the code is burnt: ask the host for a new one",
    );
    await crashed.close();
    // A clean stop with the PAKE run: the code stays spent too.
    const g2 = await w.guest("second");
    const code2 = await w.mint(agent);
    const r2 = await w.redeem(g2, code2);
    await w.send(agent, { t: "pake", requestId: r2, msg: "bXNn", hostSpki: agent.host!.spki });
    await w.restart();
    expect(await w.codeUsed(code2)).toBe(true);
  });
});
