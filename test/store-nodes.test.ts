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
    await a.nodes.claimShare("sh", "n1");
    const claims = await Promise.all([a.nodes.claimShare("sh", "n2", "n1"), b.nodes.claimShare("sh", "n3", "n1")]);
    expect(claims.filter(Boolean).length).toBe(1);
    expect(["n2", "n3"]).toContain((await a.nodes.shareNode("sh"))!);
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
