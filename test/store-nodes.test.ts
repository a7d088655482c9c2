// What nodes share in PostgreSQL: a schema several nodes migrate at once, ordered mail, atomic share claims.
import { afterAll, describe, expect, test } from "bun:test";
import { Store } from "../src/store/store.ts";
import { PG, PgDatabases } from "./pg.ts";
import { MIGRATIONS } from "../src/store/schema.ts";
import { NodeMail, nodeTag } from "../src/coordinator/node-mail.ts";

if (!PG) console.warn("store-nodes.test: TESSERA_TEST_PG_URL is not set: SKIPPED (scripts/test-services.sh sets it)");
const dbs = new PgDatabases("tessera_nodes");
afterAll(() => dbs.dropAll());
const freshDb = () => dbs.fresh();

describe.skipIf(!PG)("nodes on one PostgreSQL", () => {
  test("six nodes starting at once migrate the empty database once, without an error", async () => {
    const url = await freshDb();
    const stores = await Promise.all([1, 2, 3, 4, 5, 6].map(() => Store.open(url)));
    for (const s of stores) expect(await s.schemaVersion()).toBe(MIGRATIONS.length);
    await Promise.all(stores.map((s) => s.close()));
  });

  test("mail arrives once, in each sender's order; a share is claimed by one node", async () => {
    const url = await freshDb();
    const [a, b] = await Promise.all([Store.open(url), Store.open(url)]);
    for (let i = 1; i <= 5; i++) await a.nodes.send("n1", "n2", i, `m${i}`, Date.now());
    await b.nodes.send("n3", "n2", 1, "x", Date.now());
    const got = await b.nodes.take("n2");
    expect(got.filter((m) => m.from === "n1").map((m) => m.body)).toEqual(["m1", "m2", "m3", "m4", "m5"]);
    expect(got.length).toBe(6);
    expect(await b.nodes.take("n2")).toEqual([]);
    await a.putShare({ id: "sh", hostSpki: "k", hostName: "h", targets: ["127.0.0.1:1"] }, Date.now());
    const until = Date.now() + 60_000;
    await a.nodes.claimShare("sh", "n1", until);
    const claims = await Promise.all([
      a.nodes.claimShare("sh", "n2", until, "n1"),
      b.nodes.claimShare("sh", "n3", until, "n1"),
    ]);
    expect(claims.filter((c) => c !== undefined).length).toBe(1);
    expect(["n2", "n3"]).toContain((await a.nodes.shareNode("sh"))!);
    await Promise.all([a.close(), b.close()]);
  });

  test("leases fence: a node that lost a share's lease cannot write about it; a live lease is not taken", async () => {
    const url = await freshDb();
    const [a, b] = await Promise.all([Store.open(url), Store.open(url)]);
    const now = Date.now();
    await a.putShare({ id: "sh", hostSpki: "k", hostName: "h", targets: ["127.0.0.1:1"] }, now);
    const e1 = (await a.nodes.claimShare("sh", "n1", now + 60_000))!;
    const session = {
      id: "s1",
      shareId: "sh",
      guestSpki: "g",
      guestName: "ann",
      guestAddr: "127.0.0.1",
      hostName: "h",
      target: "127.0.0.1:1",
      openedAt: now,
    };
    expect(await a.openSession(session, { node: "n1", epoch: e1 })).toBe(true);
    // n1's lease runs for a minute: a taker that waits for it to run out gets nothing yet.
    expect(await b.nodes.claimShare("sh", "n2", now + 60_000, "n1", now)).toBeUndefined();
    expect(await b.nodes.renewLeases("n1", now + 60_000)).toEqual(new Map([["sh", e1]]));
    // Handed over (an agent registered on n2): n2 holds it under a higher epoch.
    const e2 = (await b.nodes.claimShare("sh", "n2", now + 60_000, "n1"))!;
    expect(e2).toBeGreaterThan(e1);
    expect(await a.nodes.renewLeases("n1", now + 60_000)).toEqual(new Map());
    // n1's late writes are refused by the database; n2's go through.
    const stale = { node: "n1", epoch: e1 };
    await a.setTotals("s1", 9, 9, 9, stale);
    expect(await a.closeSession("s1", "late", now, stale)).toBe(false);
    expect(await a.openSession({ ...session, id: "s2" }, stale)).toBe(false);
    await a.closeShare("sh", now, stale);
    expect(await a.nodes.shareNode("sh")).toBe("n2");
    const [open] = await b.openSessions();
    expect({ id: open!.id, streams: open!.streams }).toEqual({ id: "s1", streams: 0 });
    expect(await b.closeSession("s1", "done", now, { node: "n2", epoch: e2 })).toBe(true);
    expect(await b.closeSession("s1", "twice", now, { node: "n2", epoch: e2 })).toBe(false);
    await Promise.all([a.close(), b.close()]);
  });

  test("a node that started after another's last heartbeat is known to it at once: alive, and by its stream tag", async () => {
    const url = await freshDb();
    const [a, b] = await Promise.all([Store.open(url), Store.open(url)]);
    // A long ttl: no heartbeat comes between the two starts and the questions, so only a fresh read can answer.
    const mail = (store: Store, name: string) =>
      new NodeMail({
        store: store.nodes,
        name,
        advertise: `127.0.0.1:${name === "n1" ? 1001 : 1002}`,
        ttlMs: 600_000,
        onMail: () => {},
        onNodeLost: () => {},
      });
    const n1 = mail(a, "n1");
    await n1.start();
    const n2 = mail(b, "n2");
    await n2.start();
    // Before: n1 took n2 for a lost node (and claimed its shares), and dropped streams whose tokens n2 issued.
    expect(await n1.isLive("n2")).toBe(true);
    expect((await n1.byTag(nodeTag("n2")))?.advertise).toBe("127.0.0.1:1002");
    expect(await n1.isLive("n9")).toBe(false);
    expect(await n1.byTag(nodeTag("n9"))).toBeUndefined();
    await Promise.all([n1.stop(), n2.stop()]);
    await Promise.all([a.close(), b.close()]);
  });
});
