// In-process tests of the consent rules (redeem, request, decide, expire, withdraw, recheck) against a real Broker.
import { afterEach, describe, expect, test } from "bun:test";
import { certInfo, verifyIssuedBy } from "../../src/pki/index.ts";
import { refusal, TARGET, until, World } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

describe("approve and deny", () => {
  test("approve: guest gets a certificate for the session, agent hears of it, audit has request → approve → session.open", async () => {
    w = await World.open();
    const agent = await w.agent();
    const g = await w.guest("alice");
    const requestId = await w.redeem(g, await w.mint(agent));
    const ask = await agent.ch.wait("ask");
    expect(ask).toMatchObject({
      requestId,
      shareId: "web",
      target: TARGET,
      guest: { name: "alice", addr: g.peer.addr },
    });

    await w.confirmed(agent, g, requestId);
    await w.send(agent, { t: "decision", requestId, allow: true });
    const ok = await g.peer.ch.wait("approved");
    const sess = await agent.ch.wait("session");
    expect(sess).toMatchObject({ sessionId: ok.sessionId, shareId: "web", target: TARGET, guest: ask.guest });
    expect(ok.hostSpki).toBe(agent.host!.spki);
    // The certificate is what lets the guest resume: issued by our CA, for this session, for the key in its CSR.
    await verifyIssuedBy(ok.cert, w.ca.certPem, new Date());
    const info = certInfo(ok.cert);
    expect(info.uris).toEqual([`tessera://guest/${ok.sessionId}`]);
    expect(info.spki).toBe(ask.guest.spki);

    const names = w.names().filter((n) => ["request", "approve", "session.open"].includes(n));
    expect(names).toEqual(["request", "approve", "session.open"]);
    expect(w.one("session.open")).toMatchObject({
      requestId,
      sessionId: ok.sessionId,
      guest: "alice",
      guestKey: info.spki,
    });
    expect((await w.store.openSessions()).map((s) => s.id)).toEqual([ok.sessionId]);
    expect(w.broker.counts).toMatchObject({ sessions: 1, requests: 0 });
  });

  test("deny: guest gets denied with the host's reason, audit says deny, no session, the code stays spent", async () => {
    w = await World.open();
    const agent = await w.agent();
    const g = await w.guest();
    const code = await w.mint(agent);
    const requestId = await w.redeem(g, code);
    await w.send(agent, { t: "decision", requestId, allow: false });
    const no = await g.peer.ch.wait("denied");
    expect(no).toEqual({ t: "denied", requestId, reason: "the host declined the request" });
    expect(w.one("deny")).toMatchObject({ requestId, guest: "alice" });
    expect(w.names()).not.toContain("session.open");
    expect(agent.ch.of("session")).toEqual([]);
    expect(w.broker.counts.sessions).toBe(0);
    expect(await w.codeUsed(code)).toBe(true);
  });

  test("another approver of the same host hears who answered, and how", async () => {
    w = await World.open();
    const agent = await w.agent();
    const second = await w.hello(w.peer({ host: agent.host }));
    await w.send(second, { t: "attach", shareId: "web" });
    const g = await w.guest();
    const requestId = await w.redeem(g, await w.mint(agent));
    expect((await second.ch.wait("ask")).requestId).toBe(requestId);
    await w.confirmed(agent, g, requestId);
    await w.send(agent, { t: "decision", requestId, allow: true });
    expect(await second.ch.wait("cancel")).toEqual({ t: "cancel", requestId, reason: "answered by the host (y)" });
  });

  test("a decision from anyone but an approver of the share is forbidden, and the request stays open", async () => {
    w = await World.open();
    const agent = await w.agent();
    const otherHost = await w.agent("other", [TARGET], "elsewhere");
    const g = await w.guest();
    const requestId = await w.redeem(g, await w.mint(agent));
    expect((await refusal(w.send(g.peer, { t: "decision", requestId, allow: true }))).code).toBe("forbidden");
    expect((await refusal(w.send(otherHost, { t: "decision", requestId, allow: true }))).code).toBe("forbidden");
    expect(g.peer.ch.of("approved")).toEqual([]);
    expect(w.names()).not.toContain("approve");
    // Issue 27: no yes to a code request before its PAKE run is confirmed both ways.
    expect((await refusal(w.send(agent, { t: "decision", requestId, allow: true }))).code).toBe("not_confirmed");
    await w.confirmed(agent, g, requestId);
    await w.send(agent, { t: "decision", requestId, allow: true });
    await g.peer.ch.wait("approved");
  });

  test("maxSessions: an approval past the cap is denied with the reason, audited", async () => {
    w = await World.open({ maxSessions: 1 });
    const first = await w.session();
    const g = await w.guest("bob");
    const requestId = await w.redeem(g, await w.mint(first.host));
    await w.confirmed(first.host, g, requestId);
    await w.send(first.host, { t: "decision", requestId, allow: true });
    expect((await g.peer.ch.wait("denied")).reason).toMatch(/session limit/);
    expect(
      w
        .events()
        .filter((e) => e.event === "deny")
        .map((e) => e.requestId),
    ).toEqual([requestId]);
    expect(w.broker.counts.sessions).toBe(1);
  });
});

describe("codes", () => {
  // Issue 12 item 8 changed these two: a used code now gets the one answer for every invalid code
  // (code_invalid), and the detail reaches the audit log in the address's aggregated "refused" line.
  test("a code works once: the second redeem is refused code_invalid, the detail audited", async () => {
    w = await World.open();
    const agent = await w.agent();
    const code = await w.mint(agent);
    await w.redeem(await w.guest("alice"), code);
    const bob = await w.guest("bob");
    const err = await refusal(w.redeem(bob, code));
    expect(err.code).toBe("code_invalid");
    expect(bob.peer.ch.of("pending")).toEqual([]);
    expect(agent.ch.of("ask")).toHaveLength(1);
    await w.restart();
    expect(w.refusedLine(bob.peer.addr.replace(/:\d+$/, ""))).toMatchObject({
      attempts: 1,
      reasons: "redeem.used=1",
      shareIds: "web",
    });
  });

  test("an unknown or malformed code is refused without a request", async () => {
    w = await World.open();
    await w.agent();
    const g = await w.guest();
    expect((await refusal(w.redeem(g, "AAAA-AAAA"))).code).toBe("code_invalid");
    expect((await refusal(w.redeem(g, "nope!"))).code).toBe("bad_code");
    expect(w.broker.counts.requests).toBe(0);
  });

  test("a guest that disconnects while waiting withdraws its request, and the code works again", async () => {
    w = await World.open();
    const agent = await w.agent();
    const code = await w.mint(agent);
    const alice = await w.guest("alice");
    const requestId = await w.redeem(alice, code);
    w.broker.drop(alice.peer);
    expect(w.one("request.withdraw")).toMatchObject({ requestId, guest: "alice" });
    expect(await agent.ch.wait("cancel")).toMatchObject({ requestId });
    expect((await refusal(w.send(agent, { t: "decision", requestId, allow: true }))).code).toBe("no_request");
    // The code is handed back by a background store write; a frame does not announce it.
    await until(async () => !(await w.codeUsed(code)), "the code to be released");
    const bob = await w.guest("bob");
    const again = await w.redeem(bob, code);
    expect(again).not.toBe(requestId);
    expect(await w.codeUsed(code)).toBe(true);
  });

  test("with no approver online the redeem is refused no_approver and the code is not spent", async () => {
    w = await World.open();
    const agent = await w.host();
    await w.send(agent, { t: "register", shareId: "web", targets: [TARGET], approver: false });
    const approver = await w.hello(w.peer({ host: agent.host }));
    await w.send(approver, { t: "attach", shareId: "web" });
    const code = await w.mint(approver);
    await w.send(approver, { t: "leave", shareId: "web" });
    expect((await refusal(w.redeem(await w.guest(), code))).code).toBe("no_approver");
    expect(await w.codeUsed(code)).toBe(false);
  });
});

describe("limits and timers", () => {
  test("maxPendingPerShare: one request past the cap is refused 'limit' and its code given back", async () => {
    w = await World.open({ maxPendingPerShare: 2 });
    const agent = await w.agent();
    await w.redeem(await w.guest("a"), await w.mint(agent));
    await w.redeem(await w.guest("b"), await w.mint(agent));
    const code = await w.mint(agent);
    const c = await w.guest("c");
    expect((await refusal(w.redeem(c, code))).code).toBe("limit");
    expect(c.peer.ch.of("pending")).toEqual([]);
    expect(agent.ch.of("ask")).toHaveLength(2);
    expect(await w.codeUsed(code)).toBe(false);
    expect(w.broker.counts.requests).toBe(2);
  });

  test("a request the host does not answer in time expires: guest denied, approvers cancelled, audit request.expire", async () => {
    w = await World.open({ approvalTimeoutMs: 40 });
    const agent = await w.agent();
    const g = await w.guest();
    const requestId = await w.redeem(g, await w.mint(agent));
    const no = await g.peer.ch.wait("denied");
    expect(no.requestId).toBe(requestId);
    expect(no.reason).toMatch(/did not answer/);
    expect(await agent.ch.wait("cancel")).toMatchObject({ requestId });
    expect(w.one("request.expire")).toMatchObject({ requestId, guest: "alice" });
    expect((await refusal(w.send(agent, { t: "decision", requestId, allow: true }))).code).toBe("no_request");
    expect(g.peer.ch.of("approved")).toEqual([]);
    // A returning guest that asks what happened hears the same reason.
    const back = await w.guest();
    await w.send(back.peer, { t: "recheck", requestId });
    expect(await back.peer.ch.wait("denied")).toEqual(no);
  });

  test("recheck of a request still waiting is refused still_pending", async () => {
    w = await World.open();
    const agent = await w.agent();
    const requestId = await w.redeem(await w.guest(), await w.mint(agent));
    expect((await refusal(w.send((await w.guest()).peer, { t: "recheck", requestId }))).code).toBe("still_pending");
  });

  // Issue 12 item 6: asking by share id now needs a share registered with requestsById (see requests-by-id.test.ts).
  test("asking by share id: unknown share is no_share, a target the share does not offer is bad_target", async () => {
    w = await World.open();
    await w.agent("web", [TARGET], "box", true);
    const g = await w.guest();
    const ask = (shareId: string, target: string) =>
      w.send(g.peer, { t: "request", shareId, target, csr: g.csr, name: g.name, reason: "" });
    expect((await refusal(ask("nope", TARGET))).code).toBe("no_share");
    expect((await refusal(ask("web", "10.9.9.9:80"))).code).toBe("bad_target");
    await ask("web", TARGET);
    expect(w.one("request")).toMatchObject({ via: "share-id", target: TARGET });
  });
});
