// Walks an audit chain across its rotated files and names the first line that breaks it, and how;
// with the coordinator's certificate, also what its signatures cover (coverage.ts), and with its
// signed head, whether the file reaches what the coordinator has written.
import fs from "node:fs";
import path from "node:path";
import * as v from "valibot";
import { chainFiles, GENESIS, sha256, splitLines } from "./files.ts";
import { Coverage, duration, type CoverageSummary } from "./coverage.ts";
import { AuditLine, type Breakage } from "./line.ts";
import { ReceiptCheck } from "./receipts.ts";
import type { AuditHead } from "./checkpoint.ts";

export { splitLines };

/** A head signed longer ago than this (either way) may be a replay: said, not failed, as clocks drift. */
const HEAD_MAX_AGE_MS = 5 * 60_000;

export { AuditLine, type Breakage } from "./line.ts";

export interface VerifyResult extends Omit<CoverageSummary, "cleanStop"> {
  ok: boolean;
  /** Consent receipts (the host's signed decisions) found in the chain and checked. */
  receipts?: number;
  /** Which of them a delegated approver signed, and under whose delegation. */
  delegated?: string[];
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
  /** With a certificate: the log ends with the checkpoint of a clean stop. */
  cleanStop?: boolean;
  /** The coordinator's signed head the file was found to reach (`head` given and met). */
  head?: { seq: number; ts: string; at: string };
  bad?: { file: string; line: number; kind: Breakage; message: string };
}

export function parseLine(b: Buffer): AuditLine | undefined {
  try {
    const r = v.safeParse(AuditLine, JSON.parse(b.toString("utf8")));
    return r.success ? r.output : undefined;
  } catch {
    return undefined;
  }
}

export interface VerifyOptions {
  /** The coordinator's certificate: check checkpoint signatures and what they promise. */
  certPem?: string;
  /** The coordinator's head, its signature already checked: the file must reach it, unchanged. */
  head?: AuditHead;
  /**
   * Host keys (SHA256:...) the operator pins: every receipt must be signed by one of them, whatever key the
   * coordinator wrote in share.open/share.back lines (a coordinator could write its own there).
   */
  hostKeys?: string[];
  now?: number;
}

/** One chain: `inputs` oldest first, with the rotated files the oldest continues found beside it. */
export function verifyAudit(inputs: string[], o: VerifyOptions = {}): VerifyResult {
  const { files, missing } = chainFiles(inputs);
  return verifyChain(files, missing, o);
}

/** One chain's files, oldest first; `missing`: the file its oldest continues, which is not here. */
export function verifyChain(files: string[], missing: string | undefined, o: VerifyOptions = {}): VerifyResult {
  const r: VerifyResult = {
    ok: true,
    files,
    events: 0,
    checkpoints: 0,
    signaturesChecked: o.certPem !== undefined,
    continuesFrom: missing,
    warnings: [],
  };
  const coverage = new Coverage(o.certPem, missing !== undefined);
  const receipts = new ReceiptCheck(o.hostKeys);
  let prevHash: string | undefined;
  let prevAt: { file: string; line: number } | undefined;
  let expected: number | undefined;
  let headAt: { file: string; line: number } | undefined;
  const fail = (file: string, line: number, kind: Breakage, message: string): VerifyResult => ({
    ...r,
    checkpoints: coverage.checkpoints,
    ok: false,
    bad: { file, line, kind, message },
  });

  for (const file of files) {
    const lines = splitLines(fs.readFileSync(file));
    for (let i = 0; i < lines.length; i++) {
      const n = i + 1;
      const b = lines[i]!;
      if (b[b.length - 1] !== 10) {
        return fail(
          file,
          n,
          "torn",
          `line ${n} is torn: it ends without a newline, as a crash mid-write leaves it (the coordinator moves it aside on its next start)`,
        );
      }
      const rec = parseLine(b);
      if (!rec)
        return fail(
          file,
          n,
          "malformed",
          `line ${n} is not a valid audit line (not JSON, or missing seq/ts/event/prev): it was edited or corrupted`,
        );
      if (prevHash === undefined) {
        if (rec.prev === GENESIS && rec.seq !== 1) {
          return fail(
            file,
            n,
            "removed",
            `line ${n} starts the chain with seq ${rec.seq}, not 1: the lines before it were removed`,
          );
        }
        if (rec.prev !== GENESIS && rec.event !== "rotate") {
          return fail(
            file,
            n,
            "removed",
            `line ${n} (seq ${rec.seq}) does not start a chain: the lines before it were removed`,
          );
        }
      } else if (rec.seq !== expected) {
        const later = lines.slice(i + 1).some((x) => parseLine(x)?.seq === expected);
        if (rec.seq < expected! || later) {
          return fail(
            file,
            n,
            "reordered",
            `line ${n} has seq ${rec.seq} where seq ${expected} was expected: lines were reordered or duplicated`,
          );
        }
        const gap = rec.seq - expected! === 1 ? `seq ${expected} was` : `seq ${expected}-${rec.seq - 1} were`;
        return fail(
          file,
          n,
          "removed",
          `line ${n} has seq ${rec.seq} where seq ${expected} was expected: ${gap} removed`,
        );
      } else if (rec.prev !== prevHash) {
        const where =
          prevAt!.file === file ? `line ${prevAt!.line}` : `line ${prevAt!.line} of ${path.basename(prevAt!.file)}`;
        return fail(
          prevAt!.file,
          prevAt!.line,
          "edited",
          `${where} was edited: its hash no longer matches the prev recorded on line ${n}`,
        );
      }
      const hash = sha256(b);
      const found = coverage.line(rec, hash);
      if (found) return fail(file, n, found.kind, `line ${n} (seq ${rec.seq}) ${found.message}`);
      const badReceipt = receipts.line(rec);
      if (badReceipt) return fail(file, n, "bad-receipt", `line ${n} (seq ${rec.seq}, ${rec.event}) ${badReceipt}`);
      if (o.head && rec.seq === o.head.seq) {
        if (hash !== o.head.hash) {
          return fail(
            file,
            n,
            "edited",
            `line ${n} (seq ${rec.seq}) differs from the coordinator's signed head (seq ${o.head.seq}, written ${o.head.ts}, served ${o.head.at}): it or lines before it were edited and the chain rebuilt`,
          );
        }
        headAt = { file, line: n };
      }
      r.events++;
      r.firstSeq ??= rec.seq;
      r.firstTs ??= rec.ts;
      r.lastSeq = rec.seq;
      r.lastTs = rec.ts;
      prevHash = hash;
      prevAt = { file, line: n };
      expected = rec.seq + 1;
    }
  }
  r.checkpoints = coverage.checkpoints;
  r.receipts = receipts.valid;
  if (receipts.delegated.length) r.delegated = receipts.delegated;
  r.warnings.push(...receipts.keyChanges);
  const s = coverage.finish(o.now ?? Date.now(), headAt ? o.head!.seq : undefined);
  const end = prevAt ?? { file: files.at(-1)!, line: 0 };
  if ("kind" in s) return fail(end.file, end.line, s.kind, s.message);
  Object.assign(r, s);
  if (o.certPem === undefined) delete r.cleanStop;
  const h = o.head;
  if (!h) return r;
  if (!headAt) {
    const ends = r.lastSeq === undefined ? "has no lines" : `ends at seq ${r.lastSeq} (${r.lastTs})`;
    if ((r.lastSeq ?? 0) < h.seq) {
      const gone = (r.lastSeq ?? 0) + 1 === h.seq ? `seq ${h.seq} is` : `seq ${(r.lastSeq ?? 0) + 1}-${h.seq} are`;
      return fail(
        end.file,
        end.line,
        "cut",
        `the log ${ends}, but the coordinator's signed head is seq ${h.seq} (written ${h.ts}, served ${h.at}): ${gone} missing from the end. Lines were removed, or this copy is older than the coordinator's log`,
      );
    }
    return fail(
      end.file,
      end.line,
      "cut",
      `the coordinator's signed head is seq ${h.seq}, before this log's first line (seq ${r.firstSeq}): these files are not the log that coordinator writes`,
    );
  }
  r.head = { seq: h.seq, ts: h.ts, at: h.at };
  const age = (o.now ?? Date.now()) - Date.parse(h.at);
  if (Math.abs(age) > HEAD_MAX_AGE_MS) {
    r.warnings.push(
      `the coordinator's head was signed at ${h.at}, ${duration(Math.abs(age))} ${age > 0 ? "ago" : "from now"}: the clocks disagree, or an old head was replayed; it vouches for the log only up to seq ${h.seq}`,
    );
  }
  return r;
}
