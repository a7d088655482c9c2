// A rolling SIGTERM restart of every node under load (issue 26, graceful stop): agents and guests move to
// the other nodes when told and streams under way run out, so no control connection is cut and no
// session ends, detaches or needs a new `y`.
import { afterEach, expect, test } from "bun:test";
import { killAll } from "../e2e/harness.ts";
import { HAPROXY } from "./cluster.ts";
import { PG_BIN } from "./private-pg.ts";
import { rolling } from "./scenarios.ts";

afterEach(killAll);
const skip = !PG_BIN || !HAPROXY;
if (skip)
  console.warn("rolling.test: needs PostgreSQL's server binaries and haproxy (scripts/test-services.sh): SKIPPED");

// Not yet asserted: the "no short stream fails". A few short streams in some hundreds still fail
// around a node's exit (races between a guest's move and opens or spares already under way on the old
// node); the count is printed with the figures (and by `bun scripts/faults.ts rolling`).
test.skipIf(skip)(
  "rolling SIGTERM restart of all nodes: no connection cut, no session ends or detaches",
  async () => {
    const f = await rolling({ guests: 3 });
    console.log("rolling figures:", JSON.stringify(f));
    expect(f.controlCuts).toBe(0);
    expect(f.sessionDetaches).toBe(0);
    expect(f.guestsExited).toBe(0);
    expect(f.sessionCloses).toBe(0);
    expect(f.longCorrupt).toBe(0);
    expect(f.auditOk).toBe(true);
  },
  300_000,
);
