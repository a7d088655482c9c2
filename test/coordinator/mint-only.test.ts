// In-process tests of the mint-only attach (what `tessera mcp` uses) and the host's status frame, against a real Broker.
import { afterEach, describe, expect, test } from "bun:test";
import { MAX_STATUS_SESSIONS } from "../../src/wire/protocol.ts";
import { FAKE_PAKE, refusal, TARGET, World, type FakePeer } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

/** Another connection of the same enrolled host (same certificate), attached to `shareId`. */
async function attached(agent: FakePeer, approve?: boolean, shareId = "web"): Promise<FakePeer> {
  const p = await w.hello(w.peer({ host: agent.host }));
  await w.send(p, { t: "attach", shareId, ...(approve === undefined ? {} : { approve }) });
  await p.ch.wait("registered");
  return p;
}

describe("mint-only attach", () => {
  test("mints codes, hears no request and cannot answer one: its decision is refused and the request still waits for the human", async () => {
    w = await World.open();
    const agent = await w.agent();
    const minter = await attached(agent, false);
    const g = await w.guest("agent-alice");
    const requestId = await w.redeem(g, await w.mint(minter));
    expect((await agent.ch.wait("ask")).requestId).toBe(requestId);
    expect(minter.ch.of("ask")).toEqual([]);

    for (const allow of [true, false]) {
      const err = await refusal(w.send(minter, { t: "decision", requestId, allow }));
      expect(err.code).toBe("forbidden");
    }
    expect(w.broker.counts.requests).toBe(1);
    expect(g.peer.ch.of("approved")).toEqual([]);
    expect(g.peer.ch.of("denied")).toEqual([]);
    expect(w.names().filter((n) => n === "approve" || n === "deny")).toEqual([]);

    // The human at the share's own prompt still decides.
    await w.confirmed(agent, g, requestId);
    await w.send(agent, { t: "decision", requestId, allow: true });
    await g.peer.ch.wait("approved");
    expect(w.one("code.mint")).toMatchObject({ shareId: "web", mintOnly: true });
  });

  test("a share whose only attached peer is mint-only has nobody to approve: the guest is told so and the code works again", async () => {
    w = await World.open();
    const agent = await w.host();
    await w.send(agent, { t: "register", shareId: "web", targets: [TARGET], approver: false });
    const minter = await attached(agent, false);
    const code = await w.mint(minter);
    const g = await w.guest();
    const err = await refusal(
      w.send(g.peer, { t: "redeem", code, csr: g.csr, name: g.name, reason: "testing", pake: FAKE_PAKE }),
    );
    expect(err.code).toBe("no_approver");
    expect(await w.codeUsed(code)).toBe(false);
  });

  test("an attach without approve (older clients) still approves", async () => {
    w = await World.open();
    const agent = await w.host();
    await w.send(agent, { t: "register", shareId: "web", targets: [TARGET], approver: false });
    const human = await attached(agent);
    const ok = await w.session(human);
    expect(ok.sessionId).toMatch(/^s-/);
  });

  test("leaving or dropping a mint-only connection leaves the approvers' sessions alone", async () => {
    w = await World.open();
    const agent = await w.agent();
    const minter = await attached(agent, false);
    const s = await w.session(agent);
    await w.send(minter, { t: "leave", shareId: "web" });
    expect(await minter.ch.wait("left")).toEqual({ t: "left", shareId: "web" });
    w.broker.drop(minter);
    expect(w.broker.counts.sessions).toBe(1);
    expect(s.guest.ch.of("closed")).toEqual([]);
    // Gone means gone: no more codes from that connection.
    expect((await refusal(w.send(minter, { t: "mint", shareId: "web" }))).code).toBe("forbidden");
  });
});

describe("status", () => {
  test("the share's host sees its live sessions and waiting requests; another host and a guest are refused", async () => {
    w = await World.open();
    const agent = await w.agent();
    const s = await w.session(agent, "alice");
    await w.redeem(await w.guest("bob"), await w.mint(agent));
    const asker = await w.hello(w.peer({ host: agent.host }));
    await w.send(asker, { t: "status", shareId: "web" });
    const st = await asker.ch.wait("status");
    expect(st).toMatchObject({ shareId: "web", online: true, targets: [TARGET], more: 0, requests: 1 });
    expect(st.sessions).toEqual([
      {
        sessionId: s.sessionId,
        guest: "alice",
        addr: expect.any(String),
        target: TARGET,
        streams: 0,
        up: 0,
        down: 0,
        idleSec: expect.any(Number),
        away: false,
        path: "relay",
      },
    ]);

    const other = await w.host("other-box");
    expect((await refusal(w.send(other, { t: "status", shareId: "web" }))).code).toBe("no_share");
    const g = await w.guest();
    expect((await refusal(w.send(g.peer, { t: "status", shareId: "web" }))).code).toBe("not_host");
    expect((await refusal(w.send(asker, { t: "status", shareId: "nope" }))).code).toBe("no_share");
    // A poller's refusal names its ref, so the client never takes it for the answer to another wait.
    const polled = await refusal(w.send(asker, { t: "status", shareId: "nope", ref: "live-view" }));
    expect(polled.ref).toBe("live-view");
  });

  test("a detached guest shows as away; past the frame's list cap the rest are counted", async () => {
    w = await World.open({ maxSessions: MAX_STATUS_SESSIONS + 5 });
    const agent = await w.agent();
    const first = await w.session(agent);
    w.broker.drop(first.guest);
    for (let i = 0; i < MAX_STATUS_SESSIONS + 2; i++) await w.session(agent, `g${i}`);
    await w.send(agent, { t: "status", shareId: "web" });
    const st = await agent.ch.wait("status");
    expect(st.sessions.length).toBe(MAX_STATUS_SESSIONS);
    expect(st.more).toBe(3);
    expect(st.sessions.find((x) => x.sessionId === first.sessionId)?.away).toBe(true);
    // Dozens of sessions, each with its own PAKE and certificate: a loaded machine needs more than the
    // default 5 s. The test waits on frames, never on time; this is only its safety net.
  }, 120_000);
});
