// Unit tests for src/audit/log.ts: the append-only, hash-chained audit log.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import { AuditLog, GENESIS } from "../src/audit/log.ts";

let dir: string;
let file: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-audit-"));
  file = path.join(dir, "audit.log");
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/** Complete lines of the file, each with its trailing "\n". */
function rawLines(): string[] {
  const text = fs.readFileSync(file, "utf8");
  expect(text.endsWith("\n")).toBe(true);
  return text
    .split("\n")
    .slice(0, -1)
    .map((l) => `${l}\n`);
}

describe("AuditLog", () => {
  test("appends hash-chained JSON lines with seq 1..3", () => {
    const log = AuditLog.open(file);
    log.append("share.register", { shareId: "s1", targets: "127.0.0.1:5432" });
    log.append("code.mint", { shareId: "s1", approver: true, n: 3, none: null, skipped: undefined });
    log.append("session.open", { sessionId: "x" });
    log.close();

    const lines = rawLines();
    expect(lines).toHaveLength(3);
    const recs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(recs.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(recs.map((r) => r.event)).toEqual(["share.register", "code.mint", "session.open"]);
    expect(recs[0]!.prev).toBe(GENESIS);
    expect(GENESIS).toBe("0".repeat(64));
    expect(recs[1]!.prev).toBe(sha256(lines[0]!));
    expect(recs[2]!.prev).toBe(sha256(lines[1]!));
    for (const r of recs) expect(Number.isNaN(Date.parse(String(r.ts)))).toBe(false);
    expect(recs[0]!.shareId).toBe("s1");
    expect(recs[1]).toMatchObject({ approver: true, n: 3, none: null });
    expect("skipped" in recs[1]!).toBe(false);
  });

  test("appendDurable: concurrent lines share fsyncs, keep their order and the chain", async () => {
    const log = AuditLog.open(file);
    const pending = [log.appendDurable("a", { i: 1 }), log.appendDurable("b", { i: 2 })];
    log.append("c");
    pending.push(log.appendDurable("d"));
    await Promise.all(pending);
    await log.appendDurable("e");
    log.close();
    const lines = rawLines();
    expect(lines.map((l) => (JSON.parse(l) as { event: string }).event)).toEqual(["a", "b", "c", "d", "e"]);
    let prev = GENESIS;
    for (const l of lines) {
      expect((JSON.parse(l) as { prev: string }).prev).toBe(prev);
      prev = sha256(l);
    }
  });

  test("appendSoon: resolves with the next sync (or its own timer), in chain order", async () => {
    const log = AuditLog.open(file);
    const soon = log.appendSoon("closed-1");
    await log.appendDurable("opened-2");
    await soon; // the sync for opened-2 covered it
    await log.appendSoon("closed-3", {}, 5); // nobody else syncs: its timer does
    log.appendSoon("closed-4");
    log.close(); // close makes the waiting line durable
    const lines = rawLines();
    expect(lines.map((l) => (JSON.parse(l) as { event: string }).event)).toEqual([
      "closed-1",
      "opened-2",
      "closed-3",
      "closed-4",
    ]);
  });

  test("reopening continues seq at 4 with prev = hash of line 3", () => {
    const a = AuditLog.open(file);
    a.append("one");
    a.append("two");
    a.append("three");
    a.close();

    const b = AuditLog.open(file);
    b.append("four");
    b.close();

    const lines = rawLines();
    expect(lines).toHaveLength(4);
    const fourth = JSON.parse(lines[3]!) as Record<string, unknown>;
    expect(fourth.seq).toBe(4);
    expect(fourth.event).toBe("four");
    expect(fourth.prev).toBe(sha256(lines[2]!));
    // The whole chain still verifies.
    let prev = GENESIS;
    lines.forEach((l, i) => {
      const r = JSON.parse(l) as { seq: number; prev: string };
      expect(r.seq).toBe(i + 1);
      expect(r.prev).toBe(prev);
      prev = sha256(l);
    });
  });

  test("opening an empty existing file starts at GENESIS", () => {
    fs.writeFileSync(file, "", { mode: 0o600 });
    const log = AuditLog.open(file);
    log.append("first");
    log.close();
    const r = JSON.parse(rawLines()[0]!) as { seq: number; prev: string };
    expect(r.seq).toBe(1);
    expect(r.prev).toBe(GENESIS);
  });

  test("a field named prev cannot break the chain", () => {
    const log = AuditLog.open(file);
    log.append("real", { prev: "f".repeat(64) });
    log.append("next");
    log.close();
    const lines = rawLines();
    const r0 = JSON.parse(lines[0]!) as Record<string, unknown>;
    const r1 = JSON.parse(lines[1]!) as Record<string, unknown>;
    expect(r0.prev).toBe(GENESIS);
    expect(r1.seq).toBe(2);
    expect(r1.prev).toBe(sha256(lines[0]!));
  });

  test("after a torn final line (crash mid-write), the next event is still a whole, chained line", () => {
    const a = AuditLog.open(file);
    a.append("one");
    a.append("two");
    a.close();
    const good = rawLines();
    fs.appendFileSync(file, '{"seq":3,"ts":"2030-'); // partial write, no trailing newline

    const b = AuditLog.open(file);
    b.append("after-crash");
    b.close();

    // The log must stay readable: reopening must not throw, and the new event must be its own JSON line.
    const c = AuditLog.open(file);
    c.close();
    const text = fs.readFileSync(file, "utf8");
    expect(text.endsWith("\n")).toBe(true);
    const lines = text.split("\n").slice(0, -1);
    // The torn fragment is moved aside and a "recovered" event continues the chain from the last whole line.
    const recovered = JSON.parse(lines[2]!) as { seq: number; event: string; prev: string; tornLineMovedTo: string };
    expect(recovered.event).toBe("recovered");
    expect(recovered.seq).toBe(3);
    expect(recovered.prev).toBe(sha256(good[1]!));
    expect(fs.readFileSync(recovered.tornLineMovedTo, "utf8")).toBe('{"seq":3,"ts":"2030-');
    const last = JSON.parse(lines[3]!) as { seq: number; event: string; prev: string };
    expect(last.event).toBe("after-crash");
    expect(last.seq).toBe(4);
    expect(last.prev).toBe(sha256(`${lines[2]!}\n`));
  });

  test("the file is created with mode 0600", () => {
    const log = AuditLog.open(file);
    log.append("x");
    log.close();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });
});

// Found by the property tests (test/props/audit.test.ts): a log whose last whole line was not JSON (" \n")
// made AuditLog.open throw a bare SyntaxError, so the coordinator stopped with "JSON Parse error".
test("a log whose last line is not an audit line is refused with what to do, and left as it was", () => {
  for (const text of [" \n", '{"seq":"1","ts":"x"}\n', "[]\n"]) {
    fs.writeFileSync(file, text);
    expect(() => AuditLog.open(file)).toThrow(
      `the last line of ${file} is not an audit line, so the chain cannot go on from it; see what happened with \`tessera audit verify ${file}\`, then move the file aside to start a new log`,
    );
    expect(fs.readFileSync(file, "utf8")).toBe(text);
  }
});
