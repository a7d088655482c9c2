// Issue 20 end to end on loopback: the direct path carries a session's streams byte-exact without the
// coordinator relaying them, revoke still cuts them, and --relay-only keeps everything on the relay.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { auditEvents, deploy, echoServer, killAll, roundTrip, run, spawn, type Deployment, type Proc } from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

/** `tessera share --port` with extra flags; returns it and its code. */
async function shareWith(d: Deployment, port: number, extra: string[] = []): Promise<{ host: Proc; code: string }> {
  const host = spawn(["share", "--port", String(port), ...extra], d.hostEnv, { cwd: d.dir });
  return { host, code: (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]! };
}

async function joinWith(d: Deployment, host: Proc, code: string, name: string, extra: string[] = []): Promise<{ guest: Proc; local: number }> {
  const guest = spawn(["join", code, "--name", name, "--local", "127.0.0.1:0", ...extra], d.guestEnv);
  await host.waitFor(new RegExp(`Allow ${name} `));
  host.write("y\n");
  return { guest, local: Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]) };
}

export async function relayedBytes(d: Deployment): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^tessera_relayed_bytes_total\{[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

export function metric(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(" ")[1]);
}

test("a session whose hints work moves byte-exact data on the direct path, and the coordinator relays none of it", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await shareWith(d, echo.port);
  const { guest, local } = await joinWith(d, host, code, "dora");
  // The agent proved the guest's hint (TLS with the pinned keys) before streams are opened.
  await host.waitFor(/direct path to the guest at 127\.0\.0\.1:\d+/);
  const probe = (await auditEvents(d, "direct.probe"))[0]!;
  expect(probe).toMatchObject({ ok: true, refused: 0, over: 0 });
  const before = await relayedBytes(d);
  const payloads = [randomBytes(3_000_000), randomBytes(1), randomBytes(65_536)];
  for (const p of payloads) expect((await roundTrip(local, p)).equals(p)).toBe(true);
  await guest.waitFor(/path: direct to the host/);
  // Every stream went direct, and its close line has the agent's byte counts.
  const closes = await auditEvents(d, "stream.close", payloads.length);
  const opens = d.audit().filter((e) => e.event === "stream.open");
  expect(opens.map((e) => e.path)).toEqual(["direct", "direct", "direct"]);
  expect(closes.map((e) => e.bytesUp).sort()).toEqual(payloads.map((p) => p.length).sort());
  expect(closes.map((e) => e.bytesDown).sort()).toEqual(payloads.map((p) => p.length).sort());
  expect(await relayedBytes(d)).toBe(before);
  const text = await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text();
  expect(metric(text, 'tessera_streams_path_total{path="direct"}')).toBe(3);
  expect(metric(text, 'tessera_streams_path_total{path="relay"}')).toBe(0);
  expect(guest.err).not.toMatch(/WARN|ERROR|failed/i);
});
