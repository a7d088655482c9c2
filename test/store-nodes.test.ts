// What nodes share in PostgreSQL: a schema several nodes migrate at once, ordered mail, atomic share claims.
import { afterAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { SQL } from "bun";
import { Store } from "../src/store/store.ts";
import { MIGRATIONS } from "../src/store/schema.ts";

const PG = process.env.TESSERA_TEST_PG_URL;
if (!PG) console.warn("store-nodes.test: TESSERA_TEST_PG_URL is not set: SKIPPED (scripts/test-services.sh sets it)");
const dbs: string[] = [];
afterAll(async () => {
  if (!PG || dbs.length === 0) return;
  const admin = new SQL(PG);
  for (const db of dbs) await admin.unsafe(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin.close();
});

async function freshDb(): Promise<string> {
  const name = `tessera_nodes_${randomBytes(5).toString("hex")}`;
  const admin = new SQL(PG!);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.close();
  dbs.push(name);
  const u = new URL(PG!);
  u.pathname = `/${name}`;
  return u.toString();
}

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
});
