// The operator's controls on a real Broker and Store: removing a host (by name or key, at once, for good),
// minting single-use enrolment tokens kept only as hashes, the sessions view, and the HTTP layer's refusals.
import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import { createCsr, generateKeyPair } from "../../src/pki/index.ts";
import { startHttp } from "../../src/coordinator/http.ts";
import { OperatorGate, hashToken } from "../../src/coordinator/operator-gate.ts";
import { AdminError } from "../../src/coordinator/admin.ts";
import { HOST_REMOVED } from "../../src/coordinator/host-book.ts";
import { World, refusal } from "./fake-peers.ts";

const OPS = { name: "ops@desk", addr: "127.0.0.1:5000" };
let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

async function adminError(p: Promise<unknown>): Promise<AdminError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AdminError);
  return err as AdminError;
}

describe("hosts remove", () => {
  test("ends the host's sessions at once (no periodic check needed), refuses its connections for good, audits who asked", async () => {
    // A check interval far away: whatever ends here ends because of the removal itself.
    w = await World.open({ revalidateMs: 600_000 });
    const s = await w.session();
    const db = await w.agent("db", undefined, "other");
    const bob = await w.guest("bob");
    const dbRequest = await w.redeem(bob, await w.mint(db, "db"));
    await w.confirmed(db, bob, dbRequest);
    await w.send(db, { t: "decision", requestId: dbRequest, allow: true });
    await bob.peer.ch.wait("approved");
    const r = await w.admin().removeHost("box", OPS);
    expect(r).toMatchObject({ host: "box", key: s.host.host!.spki, shares: 1, sessions: 1 });
    expect(s.guest.ch.of("closed")).toEqual([
      { t: "closed", sessionId: s.sessionId, reason: "the host was removed by the operator" },
    ]);
    expect(s.host.ch.failures.map((e) => [e.code, e.message])).toEqual([["host_removed", HOST_REMOVED]]);
    // The other host's session is untouched.
    expect(bob.peer.ch.of("closed")).toEqual([]);
    expect(db.ch.failures).toEqual([]);
    const names = w.names();
    expect(names.indexOf("host.remove")).toBeLessThan(names.indexOf("session.close"));
    expect(w.one("host.remove")).toMatchObject({
      host: "box",
      hostKey: s.host.host!.spki,
      by: "operator",
      operator: "ops@desk",
      addr: "127.0.0.1:5000",
    });
    expect(w.one("session.close")).toMatchObject({ sessionId: s.sessionId, condition: "host_removed" });
    expect(await w.store.hostStatus(s.host.host!.spki)).toBe("removed");
    // The same certificate coming back is refused at hello, with the reason and its fix.
    const back = w.peer({ host: s.host.host });
    const err = await refusal(w.hello(back));
    expect([err.code, err.message]).toEqual(["host_removed", HOST_REMOVED]);
    expect(back.ch.of("welcome")).toEqual([]);
  });

  test("by key or unique key prefix; an unknown, ambiguous, too short or already removed selector is refused", async () => {
    w = await World.open();
    const a = await w.host("twin");
    const b = await w.host("twin");
    // Enrolment gives a taken name a suffix; a store from before that rule can still hold two "twin"s.
    expect(b.host!.name).toBe("twin-2");
    await w.store.addHost(b.host!.spki, "twin", Date.now());
    const admin = w.admin();
    expect((await adminError(admin.removeHost("nobody", OPS))).status).toBe(404);
    const twins = await adminError(admin.removeHost("twin", OPS));
    expect(twins.status).toBe(409);
    expect(twins.message).toContain(a.host!.spki);
    expect(twins.message).toContain(b.host!.spki);
    expect((await adminError(admin.removeHost("SHA256:ab", OPS))).status).toBe(400);
    expect((await admin.removeHost(a.host!.spki.slice(0, 20), OPS)).key).toBe(a.host!.spki);
    const again = await adminError(admin.removeHost(a.host!.spki, OPS));
    expect([again.status, again.message]).toEqual([409, expect.stringContaining("was already removed")]);
    // With one twin gone, the name picks the other.
    expect((await admin.removeHost("twin", OPS)).key).toBe(b.host!.spki);
    expect((await admin.hosts()).map((h) => h.name)).toEqual([]);
    expect((await admin.hosts(true)).map((h) => [h.name, h.removedBy])).toEqual([
      ["twin", "operator ops@desk from 127.0.0.1:5000"],
      ["twin", "operator ops@desk from 127.0.0.1:5000"],
    ]);
  });

  test("a removed host's key cannot enrol again, and the token it tried stays unused", async () => {
    w = await World.open();
    const admin = w.admin();
    const keys = await generateKeyPair();
    const csr = await createCsr({ keys, commonName: "lost" });
    const link = await w.hello(w.peer());
    await w.send(link, { t: "enroll", token: (await admin.enrollToken(3_600_000, OPS)).token, csr, name: "lost" });
    await admin.removeHost("lost", OPS);
    const token = (await admin.enrollToken(3_600_000, OPS)).token;
    const again = await w.hello(w.peer());
    expect((await refusal(w.send(again, { t: "enroll", token, csr, name: "lost" }))).code).toBe("host_removed");
    const fresh = await w.hello(w.peer());
    await w.send(fresh, {
      t: "enroll",
      token,
      csr: await createCsr({ keys: await generateKeyPair(), commonName: "found" }),
      name: "found",
    });
    expect(fresh.ch.of("enrolled")).toHaveLength(1);
  });
});

describe("enroll-token", () => {
  test("single use, kept only as a hash, audited without the secret; lifetime bounds", async () => {
    w = await World.open();
    const admin = w.admin();
    const { token, id, expiresAt } = await admin.enrollToken(3_600_000, OPS);
    const secret = token.split(".")[2]!;
    expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(3_500_000);
    const first = await w.hello(w.peer());
    await w.send(first, {
      t: "enroll",
      token,
      csr: await createCsr({ keys: await generateKeyPair(), commonName: "second" }),
      name: "second",
    });
    expect(first.ch.of("enrolled")).toHaveLength(1);
    const reuse = await w.hello(w.peer());
    const err = await refusal(
      w.send(reuse, {
        t: "enroll",
        token,
        csr: await createCsr({ keys: await generateKeyPair(), commonName: "third" }),
        name: "third",
      }),
    );
    expect(err.code).toBe("token_used");
    expect(w.one("enrol.token")).toMatchObject({ tokenId: id, by: "operator", operator: "ops@desk" });
    for (const f of fs.readdirSync(w.dir)) expect(fs.readFileSync(`${w.dir}/${f}`).includes(secret)).toBe(false);
    expect((await adminError(admin.enrollToken(1000, OPS))).status).toBe(400);
    expect((await adminError(admin.enrollToken(31 * 86_400_000, OPS))).status).toBe(400);
  });
});

describe("sessions view", () => {
  test("lists each live session with its host, guest, target, state and counts", async () => {
    w = await World.open();
    const s = await w.session();
    const t = await w.session(s.host, "bob");
    w.broker.drop(t.guest);
    const views = w.admin().sessions();
    expect(views.map((v) => [v.id, v.host, v.guest, v.target, v.state, v.streams.total, v.bytesUp])).toEqual([
      [s.sessionId, "box", "alice", "127.0.0.1:22", "live", 0, 0],
      [t.sessionId, "box", "bob", "127.0.0.1:22", "guest away", 0, 0],
    ]);
    expect(views[0]!.scope).toEqual({ target: "127.0.0.1:22", idleLimitSec: 1800, granted: "" });
    expect(views[0]!.path).toBe("relay");
  });
});

describe("HTTP", () => {
  test("401 on a wrong token, 403 with none configured, 400/405/413/404 on bad requests, JSON on good ones", async () => {
    w = await World.open();
    await w.session();
    const admin = w.admin();
    const good = "a".repeat(64);
    const on = startHttp({
      host: "127.0.0.1",
      port: 0,
      version: "test",
      broker: w.broker,
      admin,
      gate: gate(hashToken(good)),
    });
    const off = startHttp({
      host: "127.0.0.1",
      port: 0,
      version: "test",
      broker: w.broker,
      admin,
      gate: gate(undefined),
    });
    try {
      const base = `http://127.0.0.1:${on.port}`;
      const call = (path: string, init: RequestInit = {}, token = good) =>
        fetch(base + path, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` } });
      expect((await call("/admin/sessions", {}, "b".repeat(64))).status).toBe(401);
      expect((await fetch(`${base}/admin/sessions`)).status).toBe(401);
      const none = await fetch(`http://127.0.0.1:${off.port}/admin/sessions`, {
        headers: { authorization: `Bearer ${good}` },
      });
      expect([none.status, await none.text()]).toEqual([403, expect.stringContaining("no operator token")]);
      const list = await call("/admin/sessions");
      expect(list.status).toBe(200);
      expect(((await list.json()) as { sessions: unknown[] }).sessions).toHaveLength(1);
      expect((await call("/admin/hosts/remove")).status).toBe(405);
      const post = (body: string) => call("/admin/hosts/remove", { method: "POST", body });
      expect([
        (await post("{")).status,
        (await post('{"host":"box","extra":1}')).status,
        (await post('{"host":""}')).status,
      ]).toEqual([400, 400, 400]);
      expect((await post(JSON.stringify({ host: "x".repeat(5000) }))).status).toBe(413);
      expect((await post('{"host":"nobody"}')).status).toBe(404);
      expect((await call("/admin/nothing")).status).toBe(404);
      const minted = await call("/admin/enroll-tokens", { method: "POST", body: '{"ttlSec":600}' });
      expect(minted.status).toBe(201);
      expect(((await minted.json()) as { token: string }).token).toMatch(/^TSE1\./);
      const removed = await post('{"host":"box","operator":"ops@desk"}');
      expect(((await removed.json()) as { removed: { sessions: number } }).removed.sessions).toBe(1);
      expect(w.one("host.remove")).toMatchObject({
        operator: "ops@desk",
        addr: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      });
    } finally {
      on.stop(true);
      off.stop(true);
    }
  });
});

function gate(tokenHash: Buffer | undefined): OperatorGate {
  return new OperatorGate({ tokenHash, audit: w.audit, windowMs: 60_000, maxAddresses: 100, warn: () => {} });
}
