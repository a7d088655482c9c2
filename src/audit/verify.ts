// Walks an audit chain across its rotated files and names the first line that breaks it, and how.
import fs from "node:fs";
import path from "node:path";
import * as v from "valibot";
import { GENESIS, sha256 } from "./log.ts";
import { verifyCheckpoint } from "./checkpoint.ts";

export const AuditLine = v.looseObject({
  seq: v.pipe(v.number(), v.integer(), v.minValue(1)),
  ts: v.pipe(v.string(), v.isoTimestamp()),
  event: v.pipe(v.string(), v.minLength(1)),
  prev: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
});
export type AuditLine = v.InferOutput<typeof AuditLine>;

export type Breakage = "torn" | "malformed" | "edited" | "removed" | "reordered" | "bad-signature";

export interface VerifyResult {
  ok: boolean;
  files: string[];
  events: number;
  firstSeq?: number;
  lastSeq?: number;
  firstTs?: string;
  lastTs?: string;
  checkpoints: number;
  /** Checkpoint signatures checked against a certificate (false when none was given). */
  signaturesChecked: boolean;
  /** Set when the oldest file continues a chain whose earlier file was not found. */
  continuesFrom?: string;
  bad?: { file: string; line: number; kind: Breakage; message: string };
}

/** Splits into lines keeping each line's exact bytes (with its "\n"), which is what `prev` hashes. */
export function splitLines(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, start)) {
    out.push(buf.subarray(start, i + 1));
    start = i + 1;
  }
  if (start < buf.length) out.push(buf.subarray(start));
  return out;
}

export function parseLine(b: Buffer): AuditLine | undefined {
  try {
    const r = v.safeParse(AuditLine, JSON.parse(b.toString("utf8")));
    return r.success ? r.output : undefined;
  } catch {
    return undefined;
  }
}

/** The file `file` continues, when its first line is a rotation and that file sits beside it. */
function previousOf(file: string): string | undefined {
  const fd = fs.openSync(file, "r");
  try {
    const head = Buffer.alloc(4096);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    const first = head.subarray(0, n).toString("utf8").split("\n")[0]!;
    const rec = JSON.parse(first) as { event?: string; previousFile?: unknown };
    if (rec.event !== "rotate" || typeof rec.previousFile !== "string" || rec.previousFile.includes("/")) return undefined;
    return path.join(path.dirname(file), rec.previousFile);
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** Orders `files` oldest first, adding the rotated files each one continues when they are present. */
export function chainFiles(files: string[]): { files: string[]; missing?: string } {
  const out = [...files];
  for (let guard = 0; guard < 100_000; guard++) {
    const prev = previousOf(out[0]!);
    if (!prev || out.includes(prev)) break;
    if (!fs.existsSync(prev)) return { files: out, missing: path.basename(prev) };
    out.unshift(prev);
  }
  return { files: out };
}

export function verifyAudit(inputs: string[], o: { certPem?: string } = {}): VerifyResult {
  const { files, missing } = chainFiles(inputs);
  const r: VerifyResult = { ok: true, files, events: 0, checkpoints: 0, signaturesChecked: o.certPem !== undefined, continuesFrom: missing };
  let prevHash: string | undefined;
  let prevAt: { file: string; line: number } | undefined;
  let expected: number | undefined;
  const fail = (file: string, line: number, kind: Breakage, message: string): VerifyResult => ({ ...r, ok: false, bad: { file, line, kind, message } });

  for (const file of files) {
    const lines = splitLines(fs.readFileSync(file));
    for (let i = 0; i < lines.length; i++) {
      const n = i + 1;
      const b = lines[i]!;
      if (b[b.length - 1] !== 10) {
        return fail(file, n, "torn", `line ${n} is torn: it ends without a newline, as a crash mid-write leaves it (the coordinator moves it aside on its next start)`);
      }
      const rec = parseLine(b);
      if (!rec) return fail(file, n, "malformed", `line ${n} is not a valid audit line (not JSON, or missing seq/ts/event/prev): it was edited or corrupted`);
      if (prevHash === undefined) {
        if (rec.prev === GENESIS && rec.seq !== 1) {
          return fail(file, n, "removed", `line ${n} starts the chain with seq ${rec.seq}, not 1: the lines before it were removed`);
        }
        if (rec.prev !== GENESIS && rec.event !== "rotate") {
          return fail(file, n, "removed", `line ${n} (seq ${rec.seq}) does not start a chain: the lines before it were removed`);
        }
      } else if (rec.seq !== expected) {
        const later = lines.slice(i + 1).some((x) => parseLine(x)?.seq === expected);
        if (rec.seq < expected! || later) {
          return fail(file, n, "reordered", `line ${n} has seq ${rec.seq} where seq ${expected} was expected: lines were reordered or duplicated`);
        }
        const gap = rec.seq - expected! === 1 ? `seq ${expected} was` : `seq ${expected}-${rec.seq - 1} were`;
        return fail(file, n, "removed", `line ${n} has seq ${rec.seq} where seq ${expected} was expected: ${gap} removed`);
      } else if (rec.prev !== prevHash) {
        const where = prevAt!.file === file ? `line ${prevAt!.line}` : `line ${prevAt!.line} of ${path.basename(prevAt!.file)}`;
        return fail(prevAt!.file, prevAt!.line, "edited", `${where} was edited: its hash no longer matches the prev recorded on line ${n}`);
      }
      if (rec.event === "checkpoint") {
        r.checkpoints++;
        if (o.certPem && !verifyCheckpoint(o.certPem, rec.seq, rec.prev, String((rec as { sig?: unknown }).sig ?? ""))) {
          return fail(file, n, "bad-signature", `line ${n} is a checkpoint whose signature does not verify with the given certificate`);
        }
      }
      r.events++;
      r.firstSeq ??= rec.seq;
      r.firstTs ??= rec.ts;
      r.lastSeq = rec.seq;
      r.lastTs = rec.ts;
      prevHash = sha256(b);
      prevAt = { file, line: n };
      expected = rec.seq + 1;
    }
  }
  return r;
}
