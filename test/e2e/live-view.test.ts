// The host's live view at a real PTY: a row a guest with bytes that grow, k N ends one session while the
// other keeps moving bytes, every panel line fits 80 columns; without a terminal, plain lines instead.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { auditEvents, deploy, echoServer, killAll, roundTrip, share, spawn, type Proc } from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

async function join(
  d: Awaited<ReturnType<typeof deploy>>,
  host: Proc,
  code: string,
  name: string,
  eol: string,
  answer = "y",
): Promise<{ guest: Proc; local: number }> {
  const guest = spawn(["join", code, "--name", name, "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(new RegExp(`Allow ${name} `));
  host.write(`${answer}${eol}`);
  return { guest, local: Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]) };
}

const SIZE = "(\\d+(?:\\.\\d)?)([BkMG])";
/** The last row of `name` the panel drew: its streams and bytes (the coordinator counts bytes on the wire, TLS included). */
function lastRow(out: string, name: string): { streams: number; up: number; down: number } {
  const all = [
    ...out.matchAll(new RegExp(` \\d {2}${name}\\s+127\\.0\\.0\\.1:\\d+\\s+\\S+\\s+(\\d+)\\s+${SIZE}\\s+${SIZE}`, "g")),
  ];
  const m = all.at(-1)!;
  const n = (v: string, u: string) => Number(v) * { B: 1, k: 1e3, M: 1e6, G: 1e9 }[u as "B"]!;
  return { streams: Number(m[1]), up: n(m[2]!, m[3]!), down: n(m[4]!, m[5]!) };
}

/** The panel's lines as a terminal would show them: escape sequences out, split where lines end. */
function panelLinesOf(out: string): string[] {
  const plain = out.replace(/\x1b\[[0-9;]*[A-Za-z]|\x1b[78]/g, "\n");
  return plain.split(/[\r\n]+/).filter((l) => /^── \d+ sessions? · k N|^ # {2}guest|^ ?\d+ {2}\S/.test(l));
}

test("two guests get a row each with bytes that grow; k 1 ends one while the other keeps moving bytes", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const alice = await join(d, host, code, "alice", "\r");
  host.write("c\r");
  const second = (await host.waitFor(/code: [0-9A-Z]{4}-[0-9A-Z]{4}[\s\S]*code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
  const bob = await join(d, host, second, "bob", "\r", "y 15m");
  expect((await roundTrip(alice.local, Buffer.from("hello"))).toString()).toBe("hello");
  expect((await roundTrip(bob.local, Buffer.alloc(2000, 1))).length).toBe(2000);
  await host.waitFor(/── 2 sessions · k N ends one/);
  await host.waitFor(/ 1 {2}alice\s+127\.0\.0\.1:\d+\s+-\s+1\s+\S+\s+\S+\s+\d+:\d\d\s+-/);
  // bob's scoped yes: its scope, and the time it has left.
  await host.waitFor(/ 2 {2}bob\s+127\.0\.0\.1:\d+\s+15m\s+1\s+\S+\s+\S+\s+\d+:\d\d\s+\d+:\d\d/);
  const before = lastRow(host.out, "alice");
  expect(before.up).toBeGreaterThan(0);
  // More bytes: the same row shows the new totals.
  await roundTrip(alice.local, Buffer.alloc(50_000, 2));
  await host.waitFor(/ 1 {2}alice\s+127\.0\.0\.1:\d+\s+-\s+2\s/);
  const after = lastRow(host.out, "alice");
  expect(after.up).toBeGreaterThan(before.up);
  expect(after.down).toBeGreaterThan(before.down);
  const bobBefore = lastRow(host.out, "bob");
  host.write("k 1\r");
  await host.waitFor(/ending session 1 \(\S+\); the others keep going/);
  await alice.guest.waitFor(/session ended: the host ended the session/);
  const closed = await auditEvents(d, "session.close");
  expect(closed).toHaveLength(1);
  expect(closed[0]).toMatchObject({ guest: "alice", reason: "the host ended the session" });
  // bob's session is untouched: bytes still move, and its row stays (now the only one).
  // 1,000 bytes: enough to show in the row's 3-digit figure whether it counts TLS (relay) or payload (direct path).
  expect((await roundTrip(bob.local, Buffer.alloc(1000, 3))).length).toBe(1000);
  await host.waitFor(/── 1 session · k N[\s\S]* 2 {2}bob\s+127\.0\.0\.1:\d+\s+15m\s+2\s/);
  // A direct stream's bytes reach the coordinator with the agent's report at its close: the row catches up (bounded wait).
  for (let i = 0; i < 400 && lastRow(host.out, "bob").up <= bobBefore.up; i++) await Bun.sleep(25);
  expect(lastRow(host.out, "bob").up).toBeGreaterThan(bobBefore.up);
  expect(d.audit().filter((e) => e.event === "session.close")).toHaveLength(1);
  host.write("l\r");
  await host.waitFor(/ {2}#2 \S+ bob -> 127\.0\.0\.1:\d+, scope 15m: 2 streams, \S+ up, \S+ down, idle limit in/);
  host.write("?\r");
  await host.waitFor(/k N {3}end session N \(the others keep going\)/);
  const lines = panelLinesOf(host.out);
  expect(lines.length).toBeGreaterThan(4);
  for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
});

test("without a terminal the view prints plain lines, one per state change, and l lists", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, false);
  const alice = await join(d, host, code, "alice", "\n");
  await host.waitFor(
    /\[share\] #1 \S+ alice -> 127\.0\.0\.1:\d+: 0 streams, 0B up, 0B down, idle limit in \d+:\d\d, (through the coordinator|direct to the guest)\n/,
  );
  await roundTrip(alice.local, Buffer.from("hello"));
  await host.waitFor(/\[share\] #1 \S+ alice -> 127\.0\.0\.1:\d+: 1 stream, \S+ up, \S+ down/);
  host.write("l\n");
  await host.waitFor(/\n {2}#1 \S+ alice -> /);
  expect(host.all).not.toContain("\x1b");
  // Bytes alone are not a state change: one line a change, not one a second.
  expect(host.err.match(/\[share\] #1 /g)).toHaveLength(2);
});
