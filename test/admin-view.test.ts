// Unit tests for src/cli/admin-view.ts: the admin tables stay within 80 columns whatever the values.
import { expect, test } from "bun:test";
import { ago, hostsTable, sessionsTable, shortKey } from "../src/cli/admin-view.ts";

const KEY = "SHA256:ZSOAamPtwtQKp2/0ztegp13WyEnQ2HyVTsDjpj1g05w";

test("sessions: two lines a session, every line within 80 columns even with long names, IPv6 and big counts", () => {
  const long = "x".repeat(64);
  const out = sessionsTable([
    {
      id: "s-j_vLzd8umpMD",
      host: long,
      guest: long,
      guestAddr: "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535",
      target: "[2001:db8::1]:65535",
      state: "guest away",
      openedAt: new Date(Date.now() - 3 * 86_400_000).toISOString(),
      idleSec: 100_000,
      streams: { live: 4096, total: 123_456_789 },
      bytesUp: 1023.9 * 1024 ** 4,
      bytesDown: 5,
    },
    {
      id: "s-2",
      host: "box",
      guest: "alice",
      guestAddr: "10.0.0.1:5",
      target: "shell",
      state: "live",
      openedAt: new Date().toISOString(),
      idleSec: 0,
      streams: { live: 1, total: 1 },
      bytesUp: 0,
      bytesDown: 0,
    },
  ]);
  const lines = out.trimEnd().split("\n");
  expect(lines).toHaveLength(5);
  for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
  expect(lines[3]).toMatch(/^s-2\s+box\s+alice\s+shell\s+0s\s+0s\s+live$/);
  expect(lines[4]).toBe("    from 10.0.0.1:5  1 stream (1 live)  ↑0B ↓0B");
  expect(sessionsTable([])).toBe("no live sessions\n");
});

test("hosts: within 80 columns, removed hosts say when and by whom; the short key is a prefix `hosts remove` accepts", () => {
  const out = hostsTable([
    {
      name: "laptop-of-someone-with-a-long-name",
      key: KEY,
      enrolledAt: "2026-01-02T03:04:05.000Z",
      lastSeen: null,
      connections: 0,
      shares: [],
      removedAt: "2026-02-03T04:05:06.000Z",
      removedBy: `operator ${"y".repeat(100)}@desk from 127.0.0.1:5555`,
    },
    {
      name: "box",
      key: KEY,
      enrolledAt: "2026-01-02T03:04:05.000Z",
      lastSeen: "2026-01-03T00:00:00.000Z",
      connections: 2,
      shares: [{ id: "a", sessions: 1 }],
    },
  ]);
  const lines = out.trimEnd().split("\n");
  for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
  expect(lines[1]).toContain("removed");
  expect(lines[2]).toMatch(/^ {14}removed 2026-02-03 04:05 by operator y+…$/);
  expect(lines[3]).toMatch(/^box\s+SHA256:ZSOAamPtwtQK…\s+2026-01-02 03:04\s+online \(2\)\s+1$/);
  expect(KEY.startsWith(shortKey(KEY).replace(/…$/, ""))).toBe(true);
  expect([ago(59_999), ago(60_000), ago(3_600_000), ago(86_400_000)]).toEqual(["59s", "1m", "1h", "1d"]);
});
