// SIGKILL of a node under load (issue 26): its share is adopted by another node, its guests resume
// without the host being asked again, and a share on another node whose clients never touched the killed
// node does not notice: no stream cut, none failed, no control connection lost.
import { afterEach, expect, test } from "bun:test";
import { killAll } from "../e2e/harness.ts";
import { HAPROXY } from "./cluster.ts";
import { PG_BIN } from "./private-pg.ts";
import { sigkill } from "./scenarios.ts";

afterEach(killAll);
const skip = !PG_BIN || !HAPROXY;
if (skip)
  console.warn("sigkill.test: needs PostgreSQL's server binaries and haproxy (scripts/test-services.sh): SKIPPED");

test.skipIf(skip)(
  "SIGKILL of the node holding a share: adopted, resumed without a new y, others untouched",
  async () => {
    const f = await sigkill({ guests: 2 });
    console.log("sigkill figures:", JSON.stringify(f));
    expect(f.aGuestsExited).toBe(0);
    expect(f.aGuestsResumed).toBe(2);
    expect(f.aPromptsShown).toBe(2); // one per guest's first ask: none after the kill
    expect(f.bLongCut).toBe(0);
    expect(f.bLongCorrupt).toBe(0);
    expect(f.bShortFailed).toBe(0);
    expect(f.bControlCuts).toBe(0);
    expect(f.sessionCloses).toBe(0);
    expect(f.streamsWithoutClose).toBe(0);
    expect(f.auditOk).toBe(true);
  },
  300_000,
);
