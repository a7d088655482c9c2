// 100 s of steady load on three nodes behind HAProxy with no fault (issue 26, Why #1 found guests cut
// every 30-35 s by the role sweep): no client stream fails and no control connection is cut.
import { afterEach, expect, test } from "bun:test";
import { killAll } from "../e2e/harness.ts";
import { HAPROXY } from "./cluster.ts";
import { PG_BIN } from "./private-pg.ts";
import { steady } from "./scenarios.ts";

afterEach(killAll);
const skip = !PG_BIN || !HAPROXY;
if (skip)
  console.warn("steady.test: needs PostgreSQL's server binaries and haproxy (scripts/test-services.sh): SKIPPED");
/** TESSERA_FAULTS_STEADY_S shortens the run for a quick look; CI runs the full 100 s. */
const SECONDS = Number(process.env.TESSERA_FAULTS_STEADY_S ?? 100);

test.skipIf(skip)(
  `${SECONDS} s of steady load: 0 streams failed, 0 control connections cut`,
  async () => {
    const f = await steady({ seconds: SECONDS, guests: 4 });
    console.log("steady figures:", JSON.stringify(f));
    expect(f.shortStreams).toBeGreaterThan(0);
    expect(f.shortFailed).toBe(0);
    expect(f.longCut).toBe(0);
    expect(f.longCorrupt).toBe(0);
    expect(f.controlCuts).toBe(0);
    expect(f.sessionDetaches).toBe(0);
    expect(f.guestsExited).toBe(0);
    expect(f.auditOk).toBe(true);
  },
  (SECONDS + 120) * 1000,
);
