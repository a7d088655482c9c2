// The audit log as the operator's console shows it: the last N lines (filtered by session, host or
// guest) from its tail kept parsed in memory, and the chain's state from `tessera audit verify` itself.
// Verifying walks the whole log (measured: 18 MiB in 231 ms, so ~0.8 s at the 64 MiB rotation size),
// which must not stall the relay's event loop: it runs in a child process (audit-verify-run.ts), at most
// once every few seconds and only when the file changed, and the page shows when it was checked.
import fs from "node:fs";
import { parseLine, splitLines, type VerifyResult } from "../audit/verify.ts";

/** The most lines one answer carries, and how far back from the end a filter looks. */
export const MAX_AUDIT_LINES = 500;
const SCAN_BYTES = 4 * 1024 * 1024;
/** Parsed lines kept for filtering: the newest this many. */
const MAX_KEPT = 10_000;
/** A chain verified this recently is not walked again, changed or not. */
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

/** Verifies the chain ending in `file` (the code of `tessera audit verify`); throws when it cannot run. */
export type Verifier = (file: string) => Promise<VerifyResult>;

export class AuditView {
  private cached: { at: number; stamp: string; state: ChainState } | undefined;
  private running: Promise<ChainState> | undefined;
  /** The log's tail, parsed: which file (inode), how far it was read, the records (oldest first). */
  private tail: { ino: number; end: number; recs: Record<string, unknown>[]; midLine: boolean } | undefined;

  constructor(
    private readonly file: () => string,
    private readonly verify: Verifier,
  ) {}

  /** The last `n` whole lines that match, oldest first (from the tail kept parsed in memory). */
  lines(f: AuditFilter): Record<string, unknown>[] {
    const recs = this.catchUp();
    const out: Record<string, unknown>[] = [];
    for (let i = recs.length - 1; i >= 0 && out.length < f.n; i--) if (matches(recs[i]!, f)) out.push(recs[i]!);
    return out.reverse();
  }

  /**
   * Reads what was appended since the last call (the last SCAN_BYTES at first, or after a rotation), so a
   * page polling every second with a filter costs a few new lines, not a re-parse of megabytes (measured:
   * ~80 ms to parse 4 MiB).
   */
  private catchUp(): Record<string, unknown>[] {
    const file = this.file();
    const fd = fs.openSync(file, "r");
    try {
      const st = fs.fstatSync(fd);
      let t = this.tail;
      if (!t || t.ino !== st.ino || st.size < t.end) {
        const from = Math.max(0, st.size - SCAN_BYTES);
        t = this.tail = { ino: st.ino, end: from, recs: [], midLine: from > 0 };
      }
      if (st.size > t.end) {
        const buf = Buffer.alloc(Math.min(st.size - t.end, SCAN_BYTES));
        fs.readSync(fd, buf, 0, buf.length, t.end);
        // A start inside a line (the scan's first read) skips to the next whole one.
        const from = t.midLine ? buf.indexOf(10) + 1 : 0;
        const upTo = buf.lastIndexOf(10) + 1;
        if (upTo > from) {
          for (const l of splitLines(buf.subarray(from, upTo))) {
            const rec = parseLine(l) as Record<string, unknown> | undefined;
            if (rec) t.recs.push(rec);
          }
          if (t.recs.length > MAX_KEPT) t.recs.splice(0, t.recs.length - MAX_KEPT);
          t.midLine = false;
          t.end += upTo;
        } else if (t.midLine && from > 0) {
          t.midLine = false;
          t.end += from;
        }
      }
      return t.recs;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The chain's state: the last one known, walked again when the file changed and that one is a few seconds old. */
  async chain(now = Date.now()): Promise<ChainState> {
    const st = fs.statSync(this.file());
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const c = this.cached;
    if (c && (c.stamp === stamp || now - c.at < VERIFY_EVERY_MS)) return c.state;
    // One walk at a time; callers meanwhile get the last state (or wait for the first).
    if (!this.running) {
      this.running = this.walk(now, stamp).finally(() => {
        this.running = undefined;
      });
    }
    return c ? c.state : this.running;
  }

  /** Resolves once no walk is running (a test waits for the state it asked a walk for). */
  async idle(): Promise<void> {
    await this.running;
  }

  private async walk(now: number, stamp: string): Promise<ChainState> {
    let state: ChainState;
    try {
      state = describe(await this.verify(this.file()), now);
    } catch (err) {
      state = {
        ok: false,
        summary: `not checked: ${(err as Error).message}`,
        unsignedLines: 0,
        checkedAt: new Date(now).toISOString(),
      };
    }
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
