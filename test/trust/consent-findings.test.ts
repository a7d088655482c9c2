// Issue 27, findings 1-8, each driven through the real host/consent.ts (test/trust/host.ts) against the real
// in-process Coordinator, with a test-only wrapper that rewrites frames as a coordinator holding the CA key could.
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { Guest } from "../../src/guest/guest.ts";
import { guestStart } from "../../src/pki/code-pake.ts";
import { createCsr, exportPrivateKeyPem, generateKeyPair } from "../../src/pki/index.ts";
import { signReceipt } from "../../src/wire/receipt.ts";
import type { Peer } from "../../src/coordinator/state.ts";
import { splitCode } from "../../src/wire/codes.ts";
import type { ClientFrame, FrameOf, ServerFrame } from "../../src/wire/protocol.ts";
import { Live, within } from "../coordinator/live.ts";
import { startHost, type TestHost, until } from "./host.ts";
import { lying, servers, target } from "./lying.ts";

setDefaultTimeout(30_000);
let live: Live | undefined;
const hosts: TestHost[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.agent.stop().catch(() => {});
  for (const s of servers.splice(0)) s.close();
  await live?.close();
  live = undefined;
});

const audit = (l: Live) =>
  fs
    .readFileSync(path.join(l.dir, "audit.log"), "utf8")
    .trim()
    .split("\n")
    .map((x) => JSON.parse(x) as { event: string; [k: string]: unknown });

async function host(l: Live, port: number, o: Parameters<typeof startHost>[3] = {}) {
  const h = await startHost(l, `share-${hosts.length}`, port, o);
  hosts.push(h);
  return h;
}

/** Frames the real coordinator gets from clients, as they arrive (the agent's `end` and `refuse` among them). */
function heard(l: Live): ClientFrame[] {
  const got: ClientFrame[] = [];
  const b = l.coordinator.broker;
  const handle = b.handle.bind(b);
  b.handle = (p: Peer, f: ClientFrame) => {
    got.push(f);
    return handle(p, f);
  };
  return got;
}

/** A guesser: redeems a nameplate with its own guess at the secret half, reads what comes back, and walks away. */
async function guessAndWalk(l: Live, code: string) {
  const { nameplate, secret } = splitCode(code.replace("-", ""));
  const wrong = secret === "0000" ? "0001" : "0000";
  const run = guestStart(nameplate, wrong);
  const c = await l.dial();
  const csr = await createCsr({ keys: await generateKeyPair(), commonName: "mallory" });
  c.send({ t: "redeem", code: nameplate, csr, name: "mallory", reason: "guess", pake: run.msg });
  await c.next("pending");
  const pake = await c.next("pake");
  c.close();
  return pake as FrameOf<ServerFrame, "pake"> & { tag?: string };
}

test("finding 1: a guesser who walks away after the host's PAKE message is shown at the host and audited as code.abandoned; the host sent no tag to check offline", async () => {
  live = await Live.start();
  const t = await target();
  const h = await host(live, t.port);
  const pake = await guessAndWalk(live, h.code);
  // Nothing the guesser holds lets it check its guess offline: the host's tag comes only after the guest's.
  expect(pake.tag).toBeUndefined();
  await until(() => h.log.some((l) => l.includes("was tried and abandoned")), "the host's abandoned-code line");
  expect(h.log.find((l) => l.includes("abandoned"))).toMatch(
    new RegExp(
      `^code ${h.code.slice(0, 4)}-\\?\\?\\?\\? was tried and abandoned \\(withdrawn\\): possibly a guess; the code is burnt`,
    ),
  );
  await until(() => audit(live!).some((e) => e.event === "code.abandoned"), "the code.abandoned audit line");
  expect(audit(live).find((e) => e.event === "code.abandoned")).toMatchObject({
    guest: "mallory",
    reason: "withdrawn",
  });
  expect(h.prompts).toEqual([]);
  // Burnt: the right code no longer works.
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  expect(
    (await g.request({ code: h.code, name: "ana", reason: "late" }).then(refusedWith, (e: Error) => e)).message,
  ).toMatch(/this code is not valid/);
});

test("finding 2: a coordinator that strips the code from an ask on a code-only share gets a loud, audited refusal, never a prompt", async () => {
  live = await Live.start();
  const t = await target();
  lying(live, (f) => (f.t === "ask" ? { ...f, pake: undefined } : f));
  const h = await host(live, t.port);
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  const err = await g.request({ code: h.code, name: "ana", reason: "debug" }).then(refusedWith, (e: Error) => e);
  expect(err.message).toBe("access denied: the host declined: this share takes requests only with a code");
  expect(h.prompts).toEqual([]);
  expect(h.log).toContainEqual(
    `the coordinator sent a request without a code (from ana, for 127.0.0.1:${t.port}); this share takes none: refused`,
  );
  const deny = audit(live).find((e) => e.event === "deny");
  expect(deny).toMatchObject({ guest: "ana", reason: "this share takes requests only with a code" });
  expect(JSON.parse(String(deny!.receipt)).body.decision).toBe("deny");
  expect(t.accepted).toBe(0);
});

test("finding 3: a receipt replayed for a new session id, and a session revived after it ended, are refused by the agent; nothing reaches the target", async () => {
  live = await Live.start();
  const t = await target();
  let agentPeer: Peer | undefined;
  let sessionFrame: FrameOf<ServerFrame, "session"> | undefined;
  lying(live, (f, peer) => {
    if (f.t === "session" && !sessionFrame) {
      agentPeer = peer;
      sessionFrame = f;
    }
    return f;
  });
  const got = heard(live);
  const h = await host(live, t.port);
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  const ok = await g.request({ code: h.code, name: "ana", reason: "once" });
  const local = await g.listen("127.0.0.1", 0);
  await roundTrip(local.port);
  expect(t.accepted).toBe(1);
  await g.close();
  await until(() => h.closed.length > 0, "the session's close at the host");
  expect(sessionFrame!.requestId).toBe(ok.requestId);
  // The same signed yes, for a session id the coordinator made up: refused, and its stream too.
  agentPeer!.ch.send({ ...sessionFrame!, sessionId: "s-replayed" });
  const ended = await within(
    waitFor(got, (f) => f.t === "end" && f.sessionId === "s-replayed"),
    "the agent's refusal",
  );
  expect((ended as FrameOf<ClientFrame, "end">).reason).toContain(
    `refused by the host: the approval is already used (the host's yes to request ${ok.requestId} already opened session ${ok.sessionId}`,
  );
  agentPeer!.ch.send({
    t: "incoming",
    sessionId: "s-replayed",
    streamId: "st-1",
    token: "A".repeat(43),
    channel: true,
  });
  agentPeer!.ch.send({ t: "incoming", sessionId: "s-replayed", streamId: "t-1", via: "st-1", mux: 1 });
  await within(
    waitFor(got, (f) => f.t === "refuse" && f.streamId === "st-1"),
    "the replayed channel's refusal",
  );
  await within(
    waitFor(got, (f) => f.t === "refuse" && f.streamId === "t-1"),
    "the replayed stream's refusal",
  );
  // The session the host saw end, told again: refused too.
  agentPeer!.ch.send(sessionFrame!);
  const revived = await within(
    waitFor(got, (f) => f.t === "end" && f.sessionId === ok.sessionId && !!f.reason?.includes("already ended")),
    "the revived session's refusal",
  );
  expect(revived).toBeDefined();
  agentPeer!.ch.send({
    t: "incoming",
    sessionId: ok.sessionId,
    streamId: "st-2",
    token: "B".repeat(43),
    channel: true,
  });
  agentPeer!.ch.send({ t: "incoming", sessionId: ok.sessionId, streamId: "t-2", via: "st-2", mux: 1 });
  for (const id of ["st-2", "t-2"])
    await within(
      waitFor(got, (f) => f.t === "refuse" && f.streamId === id),
      `the revived session's refusal of ${id}`,
    );
  expect(t.accepted).toBe(1);
});

test("finding 3: a scope's clock starts no later than the receipt, whatever approval time the coordinator tells", async () => {
  live = await Live.start();
  const t = await target();
  let held: { f: FrameOf<ServerFrame, "session">; peer: Peer } | undefined;
  let approval: { f: ServerFrame; peer: Peer } | undefined;
  lying(live, (f, peer) => {
    // The coordinator holds the session frame back and tells it later, with a fresh approval time; it holds
    // the guest's approval as long (else the guest asks for its channel before the agent knows the session).
    if (f.t === "session" && !held) {
      held = { f, peer };
      // It forgets the scope itself too: it lets the guest's channel and stream through.
      live!.coordinator.broker.sessions.all.get(f.sessionId)!.scope = undefined;
      return undefined;
    }
    if (f.t === "approved" && !approval) {
      approval = { f, peer };
      return undefined;
    }
    return f;
  });
  const got = heard(live);
  const h = await host(live, t.port, { answer: () => ({ allow: true, scope: { ttlMs: 1000 } }) });
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  const approved = g.request({ code: h.code, name: "ana", reason: "a second" });
  await until(() => !!held && !!approval, "the held session and approval frames");
  const signedAt = held!.f.receipt!.body.at;
  await until(() => Date.now() > signedAt + 1000, "the scope's second to pass");
  held!.peer.ch.send({ ...held!.f, openedAt: Date.now() });
  approval!.peer.ch.send(approval!.f);
  const ok = await approved;
  // The agent's clock ran from the receipt: the session is over as it is told (the agent drops it at once),
  // so the guest's channel, and with it the stream the coordinator, forgetting the scope, would let through,
  // is refused. An agent counting from the coordinator's fresh time serves it: a stream.open and an echo.
  const local = await g.listen("127.0.0.1", 0);
  const net = await import("node:net");
  const c = net.connect({ port: local.port, host: "127.0.0.1" }, () => c.write("ping"));
  let echoed = 0;
  c.on("data", (d) => (echoed += d.length));
  c.on("error", () => {});
  const r = (await within(
    waitFor(got, (f) => f.t === "refuse" && f.sessionId === ok.sessionId),
    "the channel's refusal",
  )) as FrameOf<ClientFrame, "refuse">;
  expect(r.streamId).toStartWith("c-");
  expect(r.reason).toBe("this agent holds no such session");
  const reasons = got.filter((f) => f.t === "refuse").map((f) => (f as FrameOf<ClientFrame, "refuse">).reason);
  expect(new Set(reasons)).toEqual(new Set(["this agent holds no such session"]));
  expect(audit(live).filter((e) => e.event === "stream.open")).toEqual([]);
  expect([echoed, t.accepted]).toEqual([0, 0]);
  c.destroy();
  await g.close();
});

test("finding 4: after K failed or abandoned code checks in an hour the host answers no more PAKE runs, and says so", async () => {
  live = await Live.start({ redeemPerMinute: 100 });
  const t = await target();
  const h = await host(live, t.port, { failBudget: 2 });
  await guessAndWalk(live, h.code);
  await guessAndWalk(live, await h.mint());
  await until(() => h.log.filter((l) => l.includes("abandoned")).length === 2, "two abandoned lines");
  const third = await h.mint();
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  const err = await g.request({ code: third, name: "ana", reason: "the real one" }).then(refusedWith, (e: Error) => e);
  expect(err.message).toBe(
    "access denied: the host declined: the host is not checking codes right now; ask again later",
  );
  expect(h.log.at(-1)).toMatch(/^code \S+ was not checked: 2 code checks failed or were abandoned in the last hour/);
  expect(h.prompts).toEqual([]);
});

test("finding 5: redeems are limited per IPv6 /64, not per address; a full limiter evicts its oldest keys, not all", async () => {
  const { RateLimiter } = await import("../../src/coordinator/limits.ts");
  const { World } = await import("../coordinator/fake-peers.ts");
  const w = await World.open({ redeemPerMinute: 3 });
  try {
    const agent = await w.agent();
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) codes.push(await w.mint(agent));
    const answers: string[] = [];
    for (let i = 0; i < 4; i++) {
      const g = await w.guest(`m${i}`, { ip: `2001:db8:1:2::${i + 1}` });
      answers.push(
        await w.redeem(g, codes[i]!).then(
          () => "ok",
          (e: Error & { code?: string }) => e.code ?? e.message,
        ),
      );
    }
    expect(answers).toEqual(["ok", "ok", "ok", "rate_limited"]);
  } finally {
    await w.close();
  }
  const l = new RateLimiter(1, 60_000, 3);
  l.allow("a", 0);
  l.allow("b", 1);
  expect(l.allow("b", 2)).toBe(false);
  l.allow("c", 3);
  l.allow("d", 4); // full: "a", the oldest, goes; "b" stays blocked
  expect(l.allow("b", 5)).toBe(false);
});

test("finding 5: one budget for every redeem on the node, whoever asks", async () => {
  const { World } = await import("../coordinator/fake-peers.ts");
  const w = await World.open({ redeemGlobalPerMinute: 2 });
  try {
    const agent = await w.agent();
    const answers: string[] = [];
    for (let i = 0; i < 3; i++) {
      const g = await w.guest(`g${i}`, { ip: `198.51.100.${i + 1}` });
      answers.push(
        await w.redeem(g, await w.mint(agent)).then(
          () => "ok",
          (e: Error & { code?: string }) => e.code ?? "",
        ),
      );
    }
    expect(answers).toEqual(["ok", "ok", "rate_limited"]);
  } finally {
    await w.close();
  }
});

test("finding 6: a code minted for a port refuses a shell claim, even when the coordinator tells both sides so", async () => {
  live = await Live.start();
  const t = await target();
  lying(live, (f) => (f.t === "ask" || f.t === "pending" ? { ...f, target: "shell" } : f));
  const h = await host(live, t.port);
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  const err = await g
    .request({ code: h.code, name: "ana", reason: "a shell please" })
    .then(refusedWith, (e: Error) => e);
  expect(err.message).toBe("access denied: the host declined: the host did not make this code for this request");
  // The signed no names what the host minted the code for.
  const deny = audit(live).find((e) => e.event === "deny");
  expect(JSON.parse(String(deny!.receipt)).body).toMatchObject({ decision: "deny", target: `127.0.0.1:${t.port}` });
  expect(h.prompts).toEqual([]);
  expect(t.accepted).toBe(0);
  expect(h.log.find((l) => l.includes("was refused"))).toBe(
    `code ${h.code.slice(0, 4)}-???? was refused: it was made for 127.0.0.1:${t.port} on share share-0, but the request is for shell on share share-0; the code is burnt and nobody was connected`,
  );
});

test("finding 6: a secret file `tessera mcp` leaves keeps its share and target, is claimed once by rename, 0600, pruned when expired", async () => {
  const { CodeKeeper, leaveSecret } = await import("../../src/host/code-keeper.ts");
  const os = await import("node:os");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-secrets-"));
  try {
    const now = Date.now();
    leaveSecret(dir, "AAAA", { shareId: "web", target: "127.0.0.1:5432", expiresAt: now + 60_000 });
    leaveSecret(dir, "BBBB", { shareId: "web", target: "127.0.0.1:5432", expiresAt: now + 1 }, now);
    fs.chmodSync(path.join(dir, "AAAA"), 0o644);
    new CodeKeeper("SHA256:x", dir, now + 10);
    expect(fs.readdirSync(dir)).toEqual(["AAAA"]);
    expect(fs.statSync(path.join(dir, "AAAA")).mode & 0o777).toBe(0o600);
    const entry = JSON.parse(fs.readFileSync(path.join(dir, "AAAA"), "utf8"));
    expect(entry).toMatchObject({ shareId: "web", target: "127.0.0.1:5432" });
    // Two keepers (two `share`s) race for one file: one gets it.
    const a = new CodeKeeper("SHA256:x", dir);
    const b = new CodeKeeper("SHA256:x", dir);
    const ask = (shareId: string) =>
      ({
        t: "ask",
        requestId: `r-${shareId}`,
        shareId,
        guest: { name: "g", addr: "1.2.3.4:5", spki: `SHA256:${"A".repeat(43)}` },
        target: "127.0.0.1:5432",
        reason: "",
        deadline: now + 60_000,
        pake: { nameplate: "AAAA", ...guestStart("AAAA", entry.secret).msg },
      }) as FrameOf<ServerFrame, "ask">;
    const first = a.answer(ask("web"));
    const second = b.answer(ask("web"));
    expect(first?.ok).toBe(true);
    expect(second).toEqual({ ok: false, code: "AAAA-????" });
    expect(fs.readdirSync(dir)).toEqual([]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("finding 7: the guest refuses an approval whose target, or whose receipt's signer, is not what the code confirmed", async () => {
  for (const lie of ["target", "receipt"] as const) {
    live = await Live.start();
    const t = await target();
    const stranger = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
    lying(live, (f) => {
      if (f.t !== "approved") return f;
      if (lie === "target") return { ...f, target: "127.0.0.1:1" };
      const b = f.receipt!.body;
      const { v: _v, hostPub: _p, ...rest } = b;
      return { ...f, receipt: signReceipt(stranger, rest) };
    });
    const h = await host(live, t.port);
    const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
    const err = await g.request({ code: h.code, name: "ana", reason: "debug" }).then(refusedWith, (e: Error) => e);
    expect(err.message).toMatch(
      lie === "target"
        ? /^refused: the coordinator named target 127\.0\.0\.1:1, but the code confirmed 127\.0\.0\.1:\d+, so nothing was sent/
        : /^refused: the approval's receipt does not hold \(it is signed by SHA256:\S+, not by the host's key SHA256:\S+\), so nothing was sent/,
    );
    expect(t.accepted).toBe(0);
    for (const x of hosts.splice(0)) await x.agent.stop().catch(() => {});
    await live.close();
    live = undefined;
  }
});

/** Resolves with the first frame in `got` (now or later) that matches. */
async function waitFor(got: ClientFrame[], match: (f: ClientFrame) => boolean): Promise<ClientFrame> {
  for (;;) {
    const f = got.find(match);
    if (f) return f;
    await Bun.sleep(5);
  }
}

async function roundTrip(port: number): Promise<void> {
  const net = await import("node:net");
  await new Promise<void>((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1" }, () => s.write("ping"));
    s.on("data", () => {
      s.end();
      resolve();
    });
    s.on("error", reject);
  });
}

/** A request that should have been refused: its approval is a failure of the test, said plainly. */
function refusedWith(ok: { sessionId: string }): Error {
  return new Error(`approved (session ${ok.sessionId}) where a refusal was expected`);
}

test("finding 4: `share --share-id` mints a code by itself on a reattach at most 3 times an hour, however often the coordinator cycles it", async () => {
  const { AttachedApprover, AUTO_MINTS_PER_HOUR } = await import("../../src/cli/attached-approver.ts");
  const { Agent } = await import("../../src/host/agent.ts");
  const { TargetPolicy } = await import("../../src/host/policy.ts");
  const { CodeKeeper } = await import("../../src/host/code-keeper.ts");
  live = await Live.start();
  const t = await target();
  const id = await live.enrolledHost("box");
  const agent = new Agent({
    address: live.address,
    caPem: live.ca.certPem,
    ...id,
    version: "test",
    shareId: "db",
    policy: new TargetPolicy([`127.0.0.1:${t.port}`]),
    approver: false,
    reconnect: false,
    receipts: true,
  });
  await agent.start();
  const attaches: Peer[] = [];
  let mints = 0;
  const b = live.coordinator.broker;
  const handle = b.handle.bind(b);
  b.handle = (p: Peer, f: ClientFrame) => {
    if (f.t === "attach") attaches.push(p);
    if (f.t === "mint") mints++;
    return handle(p, f);
  };
  const stopped: string[] = [];
  const attached = new AttachedApprover(
    { address: live.address, caPem: live.ca.certPem, ...id, version: "test" },
    "db",
    (why) => stopped.push(why),
    { keeper: new CodeKeeper(id.spki), hostKeyPem: id.keyPem },
    { address: live.address },
  );
  try {
    await attached.start();
    // The coordinator says the agent left, again and again; each time the approver attaches again.
    for (let cycle = 1; cycle <= AUTO_MINTS_PER_HOUR + 2; cycle++) {
      attaches.at(-1)!.ch.send({ t: "left", shareId: "db" });
      await until(() => attaches.length === cycle + 1, `reattach ${cycle}`);
      await until(() => mints === Math.min(cycle, AUTO_MINTS_PER_HOUR) || cycle > AUTO_MINTS_PER_HOUR, `mint ${cycle}`);
    }
    // Reattached five times, minted three: the rest wait for the host's c + Enter.
    expect(attaches.length).toBe(AUTO_MINTS_PER_HOUR + 3);
    expect(mints).toBe(AUTO_MINTS_PER_HOUR);
    expect(stopped).toEqual([]);
  } finally {
    attached.stop();
    attached.client.close();
    await agent.stop();
  }
});
