// The same store tests on SQLite and on a real PostgreSQL (TESSERA_TEST_PG_URL; skipped, saying so, without it).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { SQL } from "bun";
import { Store } from "../src/store/store.ts";
import { MIGRATIONS } from "../src/store/schema.ts";

const PG = process.env.TESSERA_TEST_PG_URL;
if (!PG)
  console.warn(
    "store.test: TESSERA_TEST_PG_URL is not set: the PostgreSQL half of these tests is SKIPPED (scripts/test-services.sh sets it)",
  );

/** A fresh database per backend: a temp SQLite file, or a new PostgreSQL database dropped afterwards. */
async function fresh(kind: "sqlite" | "postgres"): Promise<{ url: string; drop: () => Promise<void> }> {
  if (kind === "sqlite") {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-store-"));
    return { url: path.join(dir, "t.db"), drop: async () => fs.rmSync(dir, { recursive: true, force: true }) };
  }
  const name = `tessera_t_${randomBytes(6).toString("hex")}`;
  const admin = new SQL(PG!);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const u = new URL(PG!);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.close();
    },
  };
}

for (const kind of ["sqlite", "postgres"] as const) {
  describe.skipIf(kind === "postgres" && !PG)(`store on ${kind}`, () => {
    let db: { url: string; drop: () => Promise<void> };
    let store: Store;
    beforeAll(async () => {
      db = await fresh(kind);
      store = await Store.open(db.url);
    });
    afterAll(async () => {
      await store.close();
      await db.drop();
    });

    test("migrations reach the latest schema version and are idempotent on reopen", async () => {
      expect(store.kind).toBe(kind);
      expect(await store.schemaVersion()).toBe(MIGRATIONS.length);
      const again = await Store.open(db.url);
      expect(await again.schemaVersion()).toBe(MIGRATIONS.length);
      await again.close();
    });

    test("meta: the first value set wins", async () => {
      expect(await store.initMeta("code_key", "aa")).toBe("aa");
      expect(await store.initMeta("code_key", "bb")).toBe("aa");
    });

    test("hosts and single-use enrolment tokens", async () => {
      await store.addHost("SHA256:h1", "laptop", 1);
      expect(await store.hostExists("SHA256:h1")).toBe(true);
      expect(await store.hostExists("SHA256:nope")).toBe(false);
      expect(await store.useEnrollToken("tok1", "SHA256:h1", 2)).toBe(true);
      expect(await store.useEnrollToken("tok1", "SHA256:h2", 3)).toBe(false);
    });

    test("hostNamesTaken: the name and its numbered variants held by other enrolled hosts", async () => {
      await store.addHost("SHA256:n1", "box", 1);
      await store.addHost("SHA256:n2", "box-2", 1);
      await store.addHost("SHA256:n3", "boxer", 1);
      expect([...(await store.hostNamesTaken("box", "SHA256:new"))].sort()).toEqual(["box", "box-2"]);
      expect([...(await store.hostNamesTaken("box", "SHA256:n1"))]).toEqual(["box-2"]);
    });

    test("a removed host stays on record, refused, and is seen by every node's poll; operator-minted tokens are kept as hashes", async () => {
      await store.addHost("SHA256:r1", "lost", 5);
      await store.touchHost("SHA256:r1", 6);
      expect(await store.hostStatus("SHA256:r1")).toBe("enrolled");
      expect(await store.removeHost("SHA256:r1", "operator ops from 127.0.0.1:1", 7)).toBe(true);
      expect(await store.removeHost("SHA256:r1", "again", 8)).toBe(false);
      expect([
        await store.hostStatus("SHA256:r1"),
        await store.hostExists("SHA256:r1"),
        await store.hostStatus("SHA256:none"),
      ]).toEqual(["removed", false, undefined]);
      expect((await store.hosts()).find((h) => h.spki === "SHA256:r1")).toEqual({
        spki: "SHA256:r1",
        name: "lost",
        enrolledAt: 5,
        lastSeen: 6,
        removedAt: 7,
        removedBy: "operator ops from 127.0.0.1:1",
      });
      expect(await store.removedHostsSince(7)).toEqual([{ spki: "SHA256:r1", name: "lost" }]);
      expect(await store.removedHostsSince(8)).toEqual([]);
      const tok = { id: "0a0b0c0d", hash: "f".repeat(64), expiresAt: 1_000 };
      expect(await store.putEnrollToken(tok, "ops", 9)).toBe(true);
      expect(await store.putEnrollToken({ ...tok, hash: "e".repeat(64) }, "ops", 9)).toBe(false);
      expect(await store.getEnrollToken("0a0b0c0d")).toEqual(tok);
      // An id already used (by a token from the CA directory's file) is not handed out again.
      expect(await store.putEnrollToken({ ...tok, id: "tok1" }, "ops", 9)).toBe(false);
      await store.pruneCodes(1_000 + 86_400_001);
      expect(await store.getEnrollToken("0a0b0c0d")).toBeUndefined();
    });

    test("shares survive until closed, and come back as open after a reopen", async () => {
      await store.putShare({ id: "sh-1", hostSpki: "SHA256:h1", hostName: "laptop", targets: ["127.0.0.1:5432"] }, 10);
      await store.putShare(
        { id: "sh-2", hostSpki: "SHA256:h1", hostName: "laptop", targets: ["127.0.0.1:80", "127.0.0.1:81"] },
        11,
      );
      await store.closeShare("sh-2", 12);
      const reopened = await Store.open(db.url);
      expect(await reopened.openShares()).toEqual([
        { id: "sh-1", hostSpki: "SHA256:h1", hostName: "laptop", targets: ["127.0.0.1:5432"] },
      ]);
      expect(await reopened.getShare("sh-2")).toBeUndefined();
      await reopened.close();
    });

    test("codes: used once, atomically; released codes work again; expired codes do not", async () => {
      await store.putCode("hash-a", "sh-1", "127.0.0.1:5432", 1_000);
      expect(await store.getCode("hash-a")).toEqual({
        shareId: "sh-1",
        target: "127.0.0.1:5432",
        expiresAt: 1_000,
        usedAt: null,
      });
      const wins = await Promise.all([
        store.useCode("hash-a", 500),
        store.useCode("hash-a", 500),
        store.useCode("hash-a", 500),
      ]);
      expect(wins.filter(Boolean)).toHaveLength(1);
      expect((await store.getCode("hash-a"))!.usedAt).toBe(500);
      await store.releaseCode("hash-a");
      expect(await store.useCode("hash-a", 600)).toBe(true);
      await store.releaseCode("hash-a");
      expect(await store.useCode("hash-a", 1_000)).toBe(false);
    });

    test("sessions keep their stream totals and close once", async () => {
      await store.openSession({
        id: "s-1",
        shareId: "sh-1",
        guestSpki: "SHA256:g",
        guestName: "ann",
        guestAddr: "127.0.0.1:5",
        hostName: "laptop",
        target: "127.0.0.1:5432",
        openedAt: 20,
      });
      await store.setTotals("s-1", 1, 100, 7);
      await store.setTotals("s-1", 2, 101, 8);
      const [s] = await store.openSessions();
      expect(s).toMatchObject({
        id: "s-1",
        guestName: "ann",
        guestAddr: "127.0.0.1:5",
        streams: 2,
        bytesUp: 101,
        bytesDown: 8,
      });
      await store.closeSession("s-1", "revoked by the operator", 30);
      await store.closeSession("s-1", "later reason", 31);
      expect(await store.openSessions()).toEqual([]);
    });

    test("pending requests are taken once at start", async () => {
      await store.putRequest({
        id: "r-1",
        shareId: "sh-1",
        codeHash: "hash-a",
        guestName: "ann",
        guestSpki: "SHA256:g",
        target: "127.0.0.1:5432",
        createdAt: 40,
      });
      await store.putRequest({
        id: "r-2",
        shareId: "sh-1",
        codeHash: null,
        guestName: "bob",
        guestSpki: "SHA256:g2",
        target: "127.0.0.1:5432",
        createdAt: 41,
      });
      await store.deleteRequest("r-2");
      expect((await store.takeRequests()).map((r) => r.id)).toEqual(["r-1"]);
      expect(await store.takeRequests()).toEqual([]);
    });
  });
}
