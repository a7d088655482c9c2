// A rolling SIGTERM restart of every node under load (issue 26, graceful stop): agents and guests move to
// the other nodes when told and streams under way run out, so no short stream fails, no control
// connection is cut and no session ends, detaches or needs a new `y`.
import { afterEach, expect, test } from "bun:test";
import { killAll } from "../e2e/harness.ts";
import { HAPROXY } from "./cluster.ts";
import { PG_BIN } from "./private-pg.ts";
import { rolling } from "./scenarios.ts";

afterEach(killAll);
const skip = !PG_BIN || !HAPROXY;
if (skip)
  console.warn("rolling.test: needs PostgreSQL's server binaries and haproxy (scripts/test-services.sh): SKIPPED");

// Short streams are far shorter than the drain timeout: none may fail. A spare retired as a guest takes it
// (guest/spare-uses.ts) and a guest mid-move (Guest.move) were where they did.
test.skipIf(skip)(
  "rolling SIGTERM restart of all nodes: no short stream fails, no connection cut, no session ends or detaches",
  async () => {
    const f = await rolling({ guests: 3 });
    console.log("rolling figures:", JSON.stringify(f));
    expect(f.shortStreams as number).toBeGreaterThan(100);
    expect(f.shortFailures).toEqual([]);
    expect(f.shortFailed).toBe(0);
    expect(f.controlCuts).toBe(0);
    expect(f.sessionDetaches).toBe(0);
    expect(f.guestsExited).toBe(0);
    expect(f.sessionCloses).toBe(0);
    expect(f.longCorrupt).toBe(0);
    expect(f.auditOk).toBe(true);
  },
  300_000,
);
