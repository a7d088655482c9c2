// The live panel's text: every line fits 80 columns whatever the names, targets and numbers.
import { expect, test } from "bun:test";
import { bytes, clock, panelLines, plainLine, scopeShort, type LiveRow } from "../../src/cli/live-rows.ts";

const row = (over: Partial<LiveRow> = {}): LiveRow => ({
  n: 1,
  sessionId: "se-abc",
  guest: "alice",
  target: "127.0.0.1:5432",
  streams: 3,
  up: 1234,
  down: 5_600_000,
  idleSec: 10,
  away: false,
  seenAt: 0,
  ...over,
});

test("sizes and countdowns stay short", () => {
  expect([bytes(0), bytes(999), bytes(1000), bytes(12_345), bytes(999_999), bytes(4_500_000_000)]).toEqual([
    "0B",
    "999B",
    "1.0k",
    "12k",
    "1.0M",
    "4.5G",
  ]);
  expect([
    clock(7),
    clock(14 * 60 + 32),
    clock(2 * 3600 + 5 * 60 + 9),
    clock(3 * 86_400 + 4 * 3600),
    clock(-5),
  ]).toEqual(["0:07", "14:32", "2:05:09", "3d04h", "0:00"]);
  expect(scopeShort({ ttlMs: 900_000, streams: 1, readOnly: true })).toBe("15m 1c ro");
  expect(scopeShort(undefined)).toBe("-");
});

test("every panel line fits 80 columns, even with long, wide or hostile names and targets", () => {
  const rows = [
    row(),
    row({
      n: 2,
      guest: "a".repeat(64),
      target: "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
      scope: { ttlMs: 7 * 86_400_000, streams: 4096, readOnly: true },
      openedAt: 0,
      up: 9e15,
      down: 9e15,
      streams: 4096,
    }),
    row({ n: 3, guest: "名前が長いゲスト😀😀😀😀😀😀", away: true }),
    ...Array.from({ length: 10 }, (_, i) => row({ n: i + 4 })),
  ];
  const lines = panelLines(rows, 1000, 1800);
  expect(lines.length).toBe(2 + 8 + 1);
  for (const l of lines) {
    expect(l.length).toBeLessThanOrEqual(79);
    expect(l).not.toMatch(/[\x00-\x1f]/);
  }
  expect(lines[2]).toMatch(/^ 1 {2}alice\s+127\.0\.0\.1:5432\s+-\s+3\s+1\.2k\s+5\.6M\s+29:49\s+-\s+-$/);
  expect(lines[4]).toContain("away");
  expect(panelLines(rows, 0, 1800, 40).every((l) => l.length <= 39)).toBe(true);
  expect(panelLines([], 0, 1800)).toEqual([]);
});

test("a time scope counts down from the approval", () => {
  const r = row({ scope: { ttlMs: 60_000 }, openedAt: 0, seenAt: 0 });
  expect(panelLines([r], 15_000, 1800)[2]).toMatch(/1m\s.*0:45 -$/);
  expect(plainLine(r, 15_000, 1800)).toBe(
    "#1 se-abc alice -> 127.0.0.1:5432, scope 1m: 3 streams, 1.2k up, 5.6M down, idle limit in 29:35, ends in 0:45",
  );
});

test("each row says which path the session's streams take", () => {
  expect(panelLines([row({ path: "direct" })], 0, 1800)[2]).toMatch(/ direct$/);
  expect(panelLines([row({ path: "relay" })], 0, 1800)[2]).toMatch(/ relay$/);
  expect(
    panelLines(
      [row({ path: "direct", target: "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535", guest: "g".repeat(64) })],
      0,
      1800,
    )[2]!.length,
  ).toBeLessThanOrEqual(79);
  expect(plainLine(row({ path: "direct" }), 0, 1800)).toMatch(/, direct to the guest$/);
  expect(plainLine(row({ path: "relay" }), 0, 1800)).toMatch(/, through the coordinator$/);
});
