// The node holding a share silently cut from PostgreSQL (issue 26, split brain): it lets go at its lease
// deadline, another node takes the share over, service comes back, and the audit logs of all nodes show
// no session closed twice, no stream served on a session another node closed, and no stream opened by a
// node on a share it had let go of.
import { afterEach, expect, test } from "bun:test";
import { killAll } from "../e2e/harness.ts";
import { HAPROXY } from "./cluster.ts";
import { PG_BIN } from "./private-pg.ts";
import { partition } from "./scenarios.ts";

afterEach(killAll);
const skip = !PG_BIN || !HAPROXY;
if (skip)
  console.warn("partition.test: needs PostgreSQL's server binaries and haproxy (scripts/test-services.sh): SKIPPED");

test.skipIf(skip)(
  "a node silently cut from PostgreSQL stops serving before another takes its share",
  async () => {
    const f = await partition({ guests: 2 });
    console.log("partition figures:", JSON.stringify(f));
    expect(f.sessionsClosedTwice).toEqual([]);
    expect(f.streamsOnClosedSessions).toEqual([]);
    expect(f.streamsAfterLetGo).toEqual([]);
    expect(f.sessionCloses).toBe(0);
    expect(f.guestsExited).toBe(0);
    expect(f.longCorrupt).toBe(0);
    expect(f.auditOk).toBe(true);
  },
  300_000,
);
