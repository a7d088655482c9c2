// The audit log as the operator's console shows it: the last N lines (filtered by session, host or
// guest) read from the file's end, and the chain's state computed by the same code as `tessera audit
// verify`, cached so a page polling every second does not walk a 64 MiB log every second.
import fs from "node:fs";
import { verifyChains } from "../audit/chains.ts";
import { parseLine, splitLines, type VerifyResult } from "../audit/verify.ts";

/** The most lines one answer carries, and how far back from the end the filter looks. */
export const MAX_AUDIT_LINES = 500;
const TAIL_BYTES = 4 * 1024 * 1024;
/** A chain verified this recently, and the file not grown since, is not walked again. */
const VERIFY_EVERY_MS = 5000;

export interface AuditFilter {
  n: number;
  session?: string;
  host?: string;
  guest?: string;
}

export interface ChainState {
  ok: boolean;
  /** "verified up to seq 812, signed checkpoint at 2026-..., unsigned tail of 3 lines", or what broke. */
  summary: string;
  lastSeq?: number;
  checkpoint?: { seq: number; ts: string };
  unsignedLines: number;
  checkedAt: string;
  bad?: { file: string; line: number; kind: string; message: string };
}

export class AuditView {
  private cached: { at: number; stamp: string; state: ChainState } | undefined;

  constructor(
    private readonly file: () => string,
    private readonly certPem: string,
  ) {}

  /** The last `n` whole lines that match, oldest first, each as its parsed record. */
  lines(f: AuditFilter): Record<string, unknown>[] {
    const file = this.file();
    const fd = fs.openSync(file, "r");
    let buf: Buffer;
    try {
      const size = fs.fstatSync(fd).size;
      const from = Math.max(0, size - TAIL_BYTES);
      buf = Buffer.alloc(size - from);
      fs.readSync(fd, buf, 0, buf.length, from);
      // A start mid-line is dropped: only whole lines are shown.
      if (from > 0) buf = buf.subarray(buf.indexOf(10) + 1);
    } finally {
      fs.closeSync(fd);
    }
    const out: Record<string, unknown>[] = [];
    const lines = splitLines(buf.subarray(0, buf.lastIndexOf(10) + 1));
    for (let i = lines.length - 1; i >= 0 && out.length < f.n; i--) {
      const rec = parseLine(lines[i]!) as Record<string, unknown> | undefined;
      if (rec && matches(rec, f)) out.push(rec);
    }
    return out.reverse();
  }

  /** The chain's state; walked again when the file has changed and the last walk is a few seconds old. */
  chain(now = Date.now()): ChainState {
    const st = fs.statSync(this.file());
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const c = this.cached;
    if (c && (c.stamp === stamp || now - c.at < VERIFY_EVERY_MS)) return c.state;
    const all = verifyChains([this.file()], { certPem: this.certPem });
    const state = describe(all.chains[0]!, now);
    this.cached = { at: now, stamp, state };
    return state;
  }
}

function matches(rec: Record<string, unknown>, f: AuditFilter): boolean {
  return (
    (!f.session || rec.sessionId === f.session) &&
    (!f.host || rec.host === f.host || rec.hostKey === f.host) &&
    (!f.guest || rec.guest === f.guest || rec.guestKey === f.guest)
  );
}

function describe(r: VerifyResult, now: number): ChainState {
  const checkedAt = new Date(now).toISOString();
  const unsignedLines = r.unsigned?.events ?? 0;
  if (!r.ok) {
    return {
      ok: false,
      summary: `BROKEN: ${r.bad!.message}`,
      lastSeq: r.lastSeq,
      unsignedLines,
      checkedAt,
      bad: { ...r.bad!, kind: String(r.bad!.kind) },
    };
  }
  const parts = [r.events ? `verified up to seq ${r.lastSeq}` : "verified: empty"];
  parts.push(
    r.lastCheckpoint
      ? `signed checkpoint at ${r.lastCheckpoint.ts} (seq ${r.lastCheckpoint.seq})`
      : "no signed checkpoint",
  );
  parts.push(`unsigned tail of ${unsignedLines} line${unsignedLines === 1 ? "" : "s"}`);
  return {
    ok: true,
    summary: parts.join(", "),
    lastSeq: r.lastSeq,
    ...(r.lastCheckpoint ? { checkpoint: { seq: r.lastCheckpoint.seq, ts: r.lastCheckpoint.ts } } : {}),
    unsignedLines,
    checkedAt,
  };
}
