// Issue 12 item 6: asking by share id is the host's choice, the share id never reaches a code holder,
// and one address or one key cannot fill a host's queue of waiting requests.
import { afterEach, describe, expect, test } from "bun:test";
import { refusal, TARGET, World, type FakePeer, type Guest } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

const byId = (g: Guest, shareId: string) =>
  w.send(g.peer, { t: "request", shareId, target: TARGET, csr: g.csr, name: g.name, reason: "" });
/** Everything the coordinator told a peer: frames and refusals. */
const heard = (p: FakePeer, errs: Error[] = []) =>
  JSON.stringify([p.ch.frames, p.ch.failures.map((e) => e.message), p.ch.errors, errs.map((e) => e.message)]);

describe("requests by share id are opt-in", () => {
  test("a share registered without requestsById refuses them with the answer an unknown share gets; the host hears nothing", async () => {
    w = await World.open();
    const agent = await w.agent("db");
    const off = await refusal(byId(await w.guest(), "db"));
    const unknown = await refusal(byId(await w.guest(), "nope"));
    expect(off.code).toBe("no_share");
    expect(off.message).toContain("--allow-requests-by-id");
    expect(off.message.replace('"db"', '"nope"')).toBe(unknown.message);
    expect(agent.ch.of("ask")).toEqual([]);
    expect(w.broker.counts.requests).toBe(0);
  });

  test("with requestsById the request reaches the host; a register without it turns it off again", async () => {
    w = await World.open();
    const agent = await w.agent("db", [TARGET], "box", true);
    const g = await w.guest();
    await byId(g, "db");
    expect((await agent.ch.wait("ask")).guest.name).toBe("alice");
    expect(w.one("share.open")).toMatchObject({ shareId: "db", requestsById: true });
    w.broker.drop(agent);
    const back = await w.hello(w.peer({ host: agent.host }));
    await w.send(back, { t: "register", shareId: "db", targets: [TARGET], approver: true });
    expect((await refusal(byId(await w.guest("bob"), "db"))).code).toBe("no_share");
  });
});

describe("the share id does not leak to code holders", () => {
  test("pending names no share, and nothing the guest hears in a whole session (or a no_approver refusal) names it", async () => {
    w = await World.open();
    const shareId = "quiet-share-7f3a";
    const agent = await w.agent(shareId);
    const g = await w.guest();
    const requestId = await w.redeem(g, await w.mint(agent, shareId));
    expect(g.peer.ch.of("pending")[0]).toEqual({ t: "pending", requestId, target: TARGET });
    await w.confirmed(agent, g, requestId);
    await w.send(agent, { t: "decision", requestId, allow: true });
    const ok = await g.peer.ch.wait("approved");
    const s = { host: agent, guest: g.peer, sessionId: ok.sessionId, cert: ok.cert, requestId };
    const ch = await w.channel(s);
    const [inc] = await w.stream(s, ch.streamId, [1]);
    // A refused stream's error frame is heard too.
    await w.stream(s, "c-nope", [2], "x");
    expect(g.peer.ch.errorFor("x.2")?.code).toBe("no_channel");
    await w.report(s, { streamId: inc!.streamId, state: "closed", up: 1, down: 1, reason: "the target refused" });
    await g.peer.ch.wait("refused");
    await w.send(g.peer, { t: "end", sessionId: ok.sessionId });
    expect(heard(g.peer)).not.toContain(shareId);

    // No approver online: the refusal a code holder gets does not name the share either.
    const h = await w.host("box2");
    await w.send(h, { t: "register", shareId: "lonely-share-9", targets: [TARGET], approver: false });
    const approver = await w.hello(w.peer({ host: h.host }));
    await w.send(approver, { t: "attach", shareId: "lonely-share-9" });
    const code = await w.mint(approver, "lonely-share-9");
    await w.send(approver, { t: "leave", shareId: "lonely-share-9" });
    const late = await w.guest("late");
    const err = await refusal(w.redeem(late, code));
    expect(err.code).toBe("no_approver");
    expect(heard(late.peer, [err])).not.toContain("lonely-share-9");
  });
});

describe("caps on one asker's waiting requests", () => {
  test("maxPendingPerAddress: one address holds at most that many of a share's waiting requests; its code is given back; another address gets in", async () => {
    w = await World.open({ maxPendingPerAddress: 2 });
    const agent = await w.agent();
    const ip = "10.9.9.9";
    await w.redeem(await w.guest("m1", { ip }), await w.mint(agent));
    await w.redeem(await w.guest("m2", { ip }), await w.mint(agent));
    const code = await w.mint(agent);
    const err = await refusal(w.redeem(await w.guest("m3", { ip }), code));
    expect(err.code).toBe("limit");
    expect(err.message).toContain("per-address cap");
    expect(await w.codeUsed(code)).toBe(false);
    expect(agent.ch.of("ask")).toHaveLength(2);
    // Someone else still reaches the host, with the same code.
    await w.redeem(await w.guest("alice"), code);
    expect(agent.ch.of("ask")).toHaveLength(3);
  });

  test("maxPendingPerGuestKey: a key already waiting cannot ask the same host again, from any address", async () => {
    w = await World.open();
    const agent = await w.agent();
    const first = await w.guest("k1");
    await w.redeem(first, await w.mint(agent));
    const code = await w.mint(agent);
    const err = await refusal(w.redeem(await w.guest("k2", { csr: first.csr }), code));
    expect(err.code).toBe("limit");
    expect(err.message).toContain("per-key cap");
    expect(await w.codeUsed(code)).toBe(false);
    expect(agent.ch.of("ask")).toHaveLength(1);
  });
});
