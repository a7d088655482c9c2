// The audit log as the operator's console shows it: the last N lines (filtered by session, host or
// guest) read backwards from the file's end, and the chain's state from `tessera audit verify` itself.
// Verifying walks the whole log (measured: 18 MiB in 231 ms, so ~0.8 s at the 64 MiB rotation size),
// which must not stall the relay's event loop: it runs in a child process (audit-verify-run.ts), at most
// once every few seconds and only when the file changed, and the page shows when it was checked.
import fs from "node:fs";
import { parseLine, splitLines, type VerifyResult } from "../audit/verify.ts";

/** The most lines one answer carries, and how far back from the end a filter looks. */
export const MAX_AUDIT_LINES = 500;
const SCAN_BYTES = 4 * 1024 * 1024;
const CHUNK = 64 * 1024;
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

  constructor(
    private readonly file: () => string,
    private readonly verify: Verifier,
  ) {}

  /** The last `n` whole lines that match, oldest first, read back from the end in chunks. */
  lines(f: AuditFilter): Record<string, unknown>[] {
    const fd = fs.openSync(this.file(), "r");
    const out: Record<string, unknown>[] = [];
    try {
      let end = fs.fstatSync(fd).size;
      let carry = Buffer.alloc(0);
      const floor = Math.max(0, end - SCAN_BYTES);
      while (end > floor && out.length < f.n) {
        const from = Math.max(floor, end - CHUNK);
        const chunk = Buffer.alloc(end - from);
        fs.readSync(fd, chunk, 0, chunk.length, from);
        end = from;
        let buf = Buffer.concat([chunk, carry]);
        // Up to the first newline may be the end of a line that starts earlier: kept for the next chunk
        // (at the file's start it is whole; at the scan's limit it is dropped with the carry).
        const nl = buf.indexOf(10);
        const cut = end === 0 ? 0 : nl < 0 ? buf.length : nl + 1;
        carry = Buffer.from(buf.subarray(0, cut));
        buf = buf.subarray(cut);
        const whole = splitLines(buf.subarray(0, buf.lastIndexOf(10) + 1));
        for (let i = whole.length - 1; i >= 0 && out.length < f.n; i--) {
          const rec = parseLine(whole[i]!) as Record<string, unknown> | undefined;
          if (rec && matches(rec, f)) out.push(rec);
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    return out.reverse();
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
