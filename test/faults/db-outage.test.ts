// PostgreSQL stopped under load (issue 26, "the database is not the data plane"): no session is lost, no
// control connection is cut, long-lived streams carry on, a join during the outage is told to retry and
// goes through after, and every node's /healthz says 503 with the reason while the database is away.
import { afterEach, expect, test } from "bun:test";
import { killAll } from "../e2e/harness.ts";
import { HAPROXY } from "./cluster.ts";
import { PG_BIN } from "./private-pg.ts";
import { dbOutage } from "./scenarios.ts";

afterEach(killAll);
const skip = !PG_BIN || !HAPROXY;
if (skip)
  console.warn("db-outage.test: needs PostgreSQL's server binaries and haproxy (scripts/test-services.sh): SKIPPED");

test.skipIf(skip)(
  "PostgreSQL stopped 10 s under load: sessions, connections and long streams survive",
  async () => {
    const f = await dbOutage({ outageMs: 10_000, guests: 3 });
    console.log("db-outage figures:", JSON.stringify(f));
    expect(f.healthBody).toMatch(/database unavailable/);
    expect(f.lateRetried).toBe(true);
    expect(f.longCut).toBe(0);
    expect(f.longCorrupt).toBe(0);
    expect(f.guestsExited).toBe(0);
    expect(f.controlCuts).toBe(0);
    expect(f.sessionDetaches).toBe(0);
    expect(f.sessionCloses).toBe(0);
    expect(f.shortFailedLaterThan5s).toBe(0);
    expect(f.auditOk).toBe(true);
  },
  240_000,
);
