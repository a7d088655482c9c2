// The operator gate end to end: without --console the coordinator serves no page, and wrong operator tokens
// are rate limited per address (429 then, even for the right one) and audited as one refused line.
import { afterAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { deploy, killAll } from "./harness.ts";

afterAll(killAll);

test("without --console there is no page; wrong operator tokens are rate limited per address (429, even for the right one) and audited as one refused line", async () => {
  const d = await deploy();
  const base = `http://127.0.0.1:${d.httpPort}`;
  const token = fs.readFileSync(path.join(d.dir, "pki/operator-token"), "utf8").trim();
  expect((await fetch(`${base}/console`)).status).toBe(404);
  const call = (token: string) => fetch(`${base}/admin/sessions`, { headers: { authorization: `Bearer ${token}` } });
  const statuses: number[] = [];
  for (let i = 0; i < 11; i++) statuses.push((await call("wrong")).status);
  expect(statuses).toEqual([...Array(10).fill(401), 429]);
  const blocked = await call(token);
  expect([blocked.status, (await blocked.text()).trim()]).toEqual([
    429,
    "too many wrong operator tokens from 127.0.0.1; wait 60s and try again",
  ]);
  d.coordinator.kill("SIGTERM");
  expect(await d.coordinator.exit()).toBe(0);
  const refused = d.audit().filter((e) => e.event === "refused");
  expect(refused).toEqual([
    expect.objectContaining({
      addr: "127.0.0.1",
      attempts: 12,
      reasons: "operator.bad_token=10 operator.rate_limited=2",
    }),
  ]);
  // No token, right or wrong, is in the log.
  expect(fs.readFileSync(path.join(d.dir, "audit.jsonl"), "utf8")).not.toContain(token);
});
