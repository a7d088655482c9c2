// A big pool must not trip the coordinator's flood guard (a control connection with more than 64 frames in
// flight is cut): the pool asks a few spares at a time, and a pool that is cut anyway shrinks and backs off,
// so the session is not detached and resumed in a loop (94 session.detach lines in 2 minutes were seen).
import { afterAll, expect, test } from "bun:test";
import { deploy, echoServer, joinApproved, killAll, roundTrip, share, type Deployment } from "./harness.ts";
import { eventually } from "../coordinator/live.ts";

afterAll(killAll);

async function metric(d: Deployment, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in /metrics`);
  return Number(line.split(" ")[1]);
}

test("--pool 64 fills without a flood cut: no session.detach, and the session works", async () => {
  const d = await deploy(["--max-connections", "1000"]);
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { guest, local } = await joinApproved(d, host, code, "big-pool", ["--pool", "64", "--relay-only"]);
  await eventually(async () => {
    const n = await metric(d, "tessera_streams_pooled");
    if (n !== 64) throw new Error(`${n} pooled`);
  }, "the pool filled to 64");
  // Use a burst of them: the refills go on without a cut either.
  const payload = Buffer.from("burst");
  const got = await Promise.all(Array.from({ length: 32 }, () => roundTrip(local, payload)));
  expect(got.every((b) => b.equals(payload))).toBe(true);
  await eventually(async () => {
    const n = await metric(d, "tessera_streams_pooled");
    if (n !== 64) throw new Error(`${n} pooled`);
  }, "the pool refilled to 64");
  const events = d.audit().map((l) => l.event);
  expect(events.filter((e) => e === "session.detach")).toEqual([]);
  expect(events.filter((e) => e === "session.resume")).toEqual([]);
  expect(guest.err).not.toContain("too many frames");
  expect(guest.proc.exitCode).toBeNull();
}, 90_000);
