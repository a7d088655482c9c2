// A rolling SIGTERM restart of every node under load (issue 26, graceful stop): agents and guests move to
// the other nodes when told, streams under way run out, so no short stream (far shorter than the drain
// timeout) fails and no session ends or needs a new `y`.
import { afterEach, expect, test } from "bun:test";
import { killAll } from "../e2e/harness.ts";
import { HAPROXY } from "./cluster.ts";
import { PG_BIN } from "./private-pg.ts";
import { rolling } from "./scenarios.ts";

afterEach(killAll);
const skip = !PG_BIN || !HAPROXY;
if (skip)
  console.warn("rolling.test: needs PostgreSQL's server binaries and haproxy (scripts/test-services.sh): SKIPPED");

test.skipIf(skip)(
  "rolling SIGTERM restart of all nodes: no short stream fails, no session ends",
  async () => {
    const f = await rolling({ guests: 3 });
    console.log("rolling figures:", JSON.stringify(f));
    expect(f.shortFailures).toEqual([]);
    expect(f.guestsExited).toBe(0);
    expect(f.sessionCloses).toBe(0);
    expect(f.longCorrupt).toBe(0);
    expect(f.auditOk).toBe(true);
  },
  300_000,
);
