// Property tests for audit files as the coordinator reopens them and `tessera audit verify` reads them: a
// log may have been edited, cut or corrupted on disk. (a) Whatever a file holds, verify gives a verdict
// (never a throw) and reopening gives a log or a TesseraError saying what to do; (b) a log as written
// verifies, and any edit, reorder, insertion or torn line is named as a breakage at a line of the file.
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AuditLog } from "../../src/audit/log.ts";
import { verifyAudit } from "../../src/audit/verify.ts";
import { TesseraError } from "../../src/errors.ts";
import { fc, typedOrValue } from "./fc.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-props-audit-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(dir, `log-${n++}.jsonl`);

/** A log as the coordinator writes it: `events` lines with fields of any JSON text. */
function written(fields: string[]): string[] {
  const file = fresh();
  const log = AuditLog.open(file);
  for (const [i, f] of fields.entries()) log.append(i % 2 ? "stream.open" : "request", { note: f });
  log.close();
  return fs.readFileSync(file, "utf8").split("\n").slice(0, -1);
}

// Logs are written with an fsync a line, so a few are written once and each run starts from one of them.
const LOGS = [
  written(["a", "b", "c"]),
  written(["", "x\ny", "\u202e", "{}", "0"]),
  written(Array.from({ length: 8 }, (_, i) => `note ${i} ${"é".repeat(i)}`)),
];
const logs = fc.constantFrom(...LOGS);
type Edit = (lines: string[]) => string[];
/**
 * Changes that leave a log that is not the one written. The last line alone, edited or dropped, leaves a
 * chain that holds together: that is what signed checkpoints and the coordinator's head are for.
 */
const edits: fc.Arbitrary<Edit> = fc.oneof(
  fc.nat().map((i) => (l: string[]) => {
    const k = i % (l.length - 1);
    const rec = JSON.parse(l[k]!);
    rec.note = `${rec.note}!`;
    return l.map((x, j) => (j === k ? JSON.stringify(rec) : x));
  }),
  fc.nat().map((i) => (l: string[]) => l.filter((_, j) => j !== i % (l.length - 1))),
  fc.nat().map((i) => (l: string[]) => {
    const k = i % (l.length - 1);
    return [...l.slice(0, k), l[k + 1]!, l[k]!, ...l.slice(k + 2)];
  }),
  fc.tuple(fc.nat(), fc.string({ minLength: 1, maxLength: 20 })).map(([i, junk]) => (l: string[]) => {
    const k = i % l.length;
    return [...l.slice(0, k), junk, ...l.slice(k)];
  }),
);

describe("audit files", () => {
  test("(b) a log as written verifies; an edit, a dropped or swapped line, or a line put in is named at its line", () => {
    fc.assert(
      fc.property(logs, edits, (lines, edit) => {
        const file = fresh();
        fs.writeFileSync(file, `${lines.join("\n")}\n`);
        expect(verifyAudit([file]).ok).toBe(true);
        const changed = edit(lines);
        fs.writeFileSync(file, `${changed.join("\n")}\n`);
        const r = verifyAudit([file]);
        expect(r.ok).toBe(false);
        expect(r.bad!.line).toBeGreaterThanOrEqual(1);
        expect(r.bad!.line).toBeLessThanOrEqual(changed.length + 1);
      }),
      { numRuns: 60 },
    );
  });

  test("(a) any file content: verify gives a verdict, and reopening gives a log or a TesseraError", () => {
    const content = fc.oneof(
      fc.tuple(logs, fc.nat(), fc.string({ maxLength: 40 })).map(([lines, cut, junk]) => {
        const text = `${lines.join("\n")}\n`;
        return text.slice(0, cut % (text.length + 1)) + (cut % 3 ? junk : "");
      }),
      fc.array(fc.oneof(fc.json(), fc.string({ maxLength: 20 })), { maxLength: 5 }).map((l) => `${l.join("\n")}\n`),
      fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString("latin1")),
    );
    fc.assert(
      fc.property(content, (text) => {
        const file = fresh();
        fs.writeFileSync(file, text);
        const r = verifyAudit([file]);
        expect(typeof r.ok).toBe("boolean");
        if (!r.ok) expect(r.bad?.message.length).toBeGreaterThan(0);
        const log = typedOrValue(() => AuditLog.open(file), TesseraError);
        if (!(log instanceof Error)) log.close();
      }),
      { numRuns: 60 },
    );
  });
});
