// The setup-and-demo script's demo, run as setup runs it but with its output in a pipe: plain text (no escape
// codes), and it ends with the coordinator stopped and its audit log verified, signed to the last line.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import path from "node:path";
import { killAll, spawnProgram } from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

test("the demo into a pipe: no escape codes, a clean stop, a fully signed and verified log", async () => {
  const env = { ...process.env } as Record<string, string>;
  delete env.NO_COLOR;
  const demo = spawnProgram(["bun", path.join(import.meta.dir, "../../scripts/demo.ts")], env);
  expect(await demo.exit(80_000), demo.all).toBe(0);
  expect(demo.all).not.toContain("\x1b");
  expect(demo.out).toContain("ends with the signed checkpoint of a clean stop");
  // The verification itself has no warning (an unsigned tail would be one).
  expect(demo.out.slice(demo.out.indexOf("» tessera audit verify"))).not.toMatch(/warning/);
  expect(demo.out).toContain("» demo complete");
  // The curl's stream carried bytes both ways, and its close line counts them (a direct stream that ended
  // with its session inside the agent's report batch was once written as 0 bytes).
  const close = /stream\.close guest=demo-guest up=(\d+) down=(\d+)/.exec(demo.out);
  expect(close, demo.out).not.toBeNull();
  expect(Number(close![1])).toBeGreaterThan(0);
  expect(Number(close![2])).toBeGreaterThan(0);
});
