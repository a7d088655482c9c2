// PostgreSQL stopped under load (issue 26, "the database is not the data plane"): no session is lost, no
// control connection is cut, long-lived streams carry on, a join during the outage is told to retry and
// goes through after, and every node's /healthz says 503 with the reason while the database is away.
// 10 s, and 60 s: longer than the role timeout (30 s), which once cut the join retrying meanwhile.
import { afterEach, expect, test } from "bun:test";
import { killAll } from "../e2e/harness.ts";
import { HAPROXY } from "./cluster.ts";
import { PG_BIN } from "./private-pg.ts";
import { dbOutage } from "./scenarios.ts";

afterEach(killAll);
const skip = !PG_BIN || !HAPROXY;
if (skip)
  console.warn("db-outage.test: needs PostgreSQL's server binaries and haproxy (scripts/test-services.sh): SKIPPED");

for (const seconds of [10, 60]) {
  test.skipIf(skip)(
    `PostgreSQL stopped ${seconds} s under load: sessions, connections and long streams survive`,
    async () => {
      const f = await dbOutage({ outageMs: seconds * 1000, guests: 3 });
      console.log(`db-outage ${seconds} s figures:`, JSON.stringify(f));
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
    (seconds + 180) * 1000,
  );
}
