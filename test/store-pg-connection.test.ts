// The PostgreSQL connection under faults (issue 26): a silent partition (a frozen forwarder: bytes held,
// nothing closed) makes a query fail with DatabaseUnavailable instead of hanging; a stopped server is
// `unavailable` at once; after the partition heals or the server returns, queries work again without a
// restart, on a fresh pool.
import { afterAll, expect, test } from "bun:test";
import { Freezer } from "./faults/freezer.ts";
import { PG_BIN, PrivatePg } from "./faults/private-pg.ts";
import { DatabaseUnavailable, PgConnection, isSilent, isUnavailable } from "../src/store/pg-connection.ts";

if (!PG_BIN) console.warn("store-pg-connection.test: PostgreSQL's server binaries are missing: SKIPPED");
const cleanup: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

test.skipIf(!PG_BIN)(
  "a frozen connection is an error within the deadline, and recovery needs no restart",
  async () => {
    const pg = await PrivatePg.start();
    cleanup.push(() => pg.destroy());
    const f = new Freezer("127.0.0.1", pg.port);
    await f.listen();
    cleanup.push(() => f.close());
    const c = new PgConnection(`postgres://postgres@127.0.0.1:${f.port}/postgres`, { queryMs: 1_000, probeMs: 200 });
    cleanup.push(() => c.close());
    expect(await c.sql`SELECT 1 AS one`).toEqual([{ one: 1 }]);
    expect(c.unavailable).toBeUndefined();

    f.freeze();
    const err = await c.sql`SELECT 2`.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DatabaseUnavailable);
    expect(isUnavailable(err) && isSilent(err)).toBe(true);
    expect(c.unavailable).toMatch(/database unavailable: no answer from PostgreSQL within 1s/);

    f.heal();
    c.startProbe();
    for (let i = 0; c.unavailable && i < 200; i++) await Bun.sleep(50);
    expect(c.unavailable).toBeUndefined();
    expect(await c.sql`SELECT 3 AS three`).toEqual([{ three: 3 }]);

    // The server itself stopped (dialled directly: behind the forwarder a refusal looks like a hang-up):
    // a refusal, told apart from silence, since it fences nobody.
    const direct = new PgConnection(pg.url(), { queryMs: 1_000, probeMs: 200 });
    cleanup.push(() => direct.close());
    expect(await direct.sql`SELECT 4 AS four`).toEqual([{ four: 4 }]);
    await pg.down("fast");
    const refused = await direct.sql`SELECT 4`.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isUnavailable(refused)).toBe(true);
    expect(isSilent(refused)).toBe(false);
    expect(direct.unavailable).toMatch(/database unavailable/);
    await pg.up();
    direct.startProbe();
    for (let i = 0; direct.unavailable && i < 200; i++) await Bun.sleep(50);
    expect(direct.unavailable).toBeUndefined();
    expect(await direct.sql`SELECT 5 AS five`).toEqual([{ five: 5 }]);
  },
  60_000,
);
