// Unit tests for src/shell/recorder.ts (asciicast v2 writer) and src/shell/replay.ts (validating player).
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { MAX_LINE_BYTES } from "../src/shell/asciicast.ts";
import { Recorder } from "../src/shell/recorder.ts";
import { replay } from "../src/shell/replay.ts";

const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), "tessera-cast-"));

function writeCast(lines: unknown[]): string {
  const file = path.join(dir(), "x.cast");
  fs.writeFileSync(file, `${lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n")}\n`);
  return file;
}

async function play(file: string, speed = 1, maxIdleMs?: number) {
  let out = "";
  const sleeps: number[] = [];
  const r = await replay(file, {
    speed,
    maxIdleMs,
    write: (t) => void (out += t),
    sleep: async (ms) => void sleeps.push(ms),
  });
  return { ...r, out, sleeps };
}

const HEAD = { version: 2, width: 80, height: 24 };

describe("recorder", () => {
  test("writes a private asciicast v2 file named by session, keeping characters split across chunks whole", async () => {
    const d = path.join(dir(), "recs");
    const r = Recorder.open(d, { sessionId: "s-abc", cols: 100, rows: 30, title: "t", env: { TERM: "xterm" } });
    const euro = Buffer.from("€ok", "utf8"); // € is 3 bytes: split it between two chunks
    r.output(euro.subarray(0, 2));
    r.output(euro.subarray(2));
    r.resize(90, 20);
    r.output(Buffer.from("\x1b[1mbold\r\n"));
    r.close();
    r.output(Buffer.from("after close is ignored"));
    expect(r.file).toBe(path.join(d, "s-abc.cast"));
    expect(fs.statSync(r.file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(d).mode & 0o777).toBe(0o700);
    const lines = fs
      .readFileSync(r.file, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ version: 2, width: 100, height: 30, title: "t", env: { TERM: "xterm" } });
    expect(lines.slice(1).map((e: unknown[]) => e.slice(1))).toEqual([
      ["o", "€ok"],
      ["r", "90x20"],
      ["o", "\x1b[1mbold\r\n"],
    ]);
    const played = await play(r.file);
    expect(played.out).toBe("€ok\x1b[1mbold\r\n");
    expect(played.events).toBe(3);
    // Never overwrites: a session id is recorded once.
    expect(() => Recorder.open(d, { sessionId: "s-abc", cols: 1, rows: 1, title: "", env: {} })).toThrow(/EEXIST/);
  });
});

describe("replay", () => {
  test("keeps the recorded pauses, scaled by speed and capped by max idle", async () => {
    const file = writeCast([
      HEAD,
      [0.5, "o", "a"],
      [1.5, "o", "b"],
      [1.5, "r", "10x10"],
      [11.5, "o", "c"],
      [11.5, "m", "marker"],
    ]);
    const normal = await play(file);
    expect(normal.out).toBe("abc");
    expect(normal.sleeps).toEqual([500, 1000, 10_000]);
    expect((await play(file, 2)).sleeps).toEqual([250, 500, 5000]);
    expect((await play(file, 1, 2000)).sleeps).toEqual([500, 1000, 2000]);
  });

  test("refuses a bad file with the line and the reason", async () => {
    const cases: [unknown[], RegExp][] = [
      [[], /empty/],
      [["not json"], /line 1: the header is not valid JSON/],
      [[{ version: 1, width: 80, height: 24 }], /line 1: invalid header at version/],
      [[{ version: 2, width: 0, height: 24 }], /line 1: invalid header at width/],
      [[HEAD, [0.1, "o", "x"], "{oops"], /line 3: the event is not valid JSON/],
      [[HEAD, [0.1, "o"]], /line 2: invalid event/],
      [[HEAD, [-1, "o", "x"]], /line 2: invalid event/],
      [[HEAD, [0.1, "output", "x"]], /line 2: invalid event at 1: must be an event code/],
      [[HEAD, [0.1, "o", 5]], /line 2: invalid event at 2/],
      [[HEAD, [0.1, "r", "wide"]], /line 2: invalid event: a resize \("r"\) event's data must be COLSxROWS/],
      [[HEAD, [2, "o", "x"], [1, "o", "y"]], /line 3: event time 1 goes backwards \(previous 2\)/],
    ];
    for (const [lines, re] of cases) {
      const file = path.join(dir(), "bad.cast");
      fs.writeFileSync(file, lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n"));
      await expect(play(file)).rejects.toThrow(re);
    }
    await expect(play(path.join(dir(), "missing.cast"))).rejects.toThrow(/no such file/);
  });

  test("a line past the limit is refused without buffering the rest of it", async () => {
    const file = path.join(dir(), "long.cast");
    fs.writeFileSync(file, `${JSON.stringify(HEAD)}\n[0.1, "o", "${"x".repeat(MAX_LINE_BYTES + 10)}`);
    await expect(play(file)).rejects.toThrow(/longer than/);
  });
});
