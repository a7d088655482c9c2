// When the audit log signs: every N events, and at most T after any event (a timer, and a check before
// each write), each checkpoint carrying the previous one's hash. What it promises is signed into every
// checkpoint, so a verifier can hold the log to it.
import fs from "node:fs";
import { GENESIS, previousOf, sha256 } from "./files.ts";
import { signCheckpoint, type CheckpointReason } from "./checkpoint.ts";

/** Where a reopened chain stands: its last checkpoint line's hash, and the lines written after it. */
export interface Resumed {
  prevCheckpoint: string;
  unsigned: number;
  since?: number;
}

export class Signer {
  /** Lines written since the last checkpoint, and the time of the first of them. */
  private unsigned = 0;
  private since: number | undefined;
  private prevCheckpoint = GENESIS;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly keyPem: string,
    readonly every: number,
    readonly intervalMs: number,
    /** Called `intervalMs` after a line was left unsigned (the log then writes a checkpoint). */
    private readonly onDue: () => void,
  ) {}

  get pending(): number {
    return this.unsigned;
  }

  resume(r: Resumed): void {
    this.prevCheckpoint = r.prevCheckpoint;
    this.unsigned = r.unsigned;
    this.since = r.since;
  }

  /** A line written at `now` would be more than the interval after the first unsigned one: sign first. */
  intervalDue(now: number): boolean {
    return this.intervalMs > 0 && this.unsigned > 0 && now - this.since! >= this.intervalMs;
  }

  countDue(): boolean {
    return this.every > 0 && this.unsigned >= this.every;
  }

  /** A line other than a checkpoint was written at `now`. */
  wrote(now: number): void {
    if (this.unsigned++ > 0) return;
    this.since = now;
    if (this.intervalMs > 0) {
      this.timer = setTimeout(this.onDue, this.intervalMs);
      // A quiet log must not keep the process alive; close() signs what is left on a clean stop.
      this.timer.unref?.();
    }
  }

  /** The fields of the checkpoint line at (seq, ts, prev); `signed` must follow with that line's hash. */
  fields(seq: number, ts: string, prev: string, reason: CheckpointReason): Record<string, string | number> {
    const body = {
      seq,
      ts,
      prev,
      prevCheckpoint: this.prevCheckpoint,
      reason,
      every: this.every,
      intervalMs: this.intervalMs,
    };
    return {
      reason,
      every: this.every,
      intervalMs: this.intervalMs,
      prevCheckpoint: this.prevCheckpoint,
      sig: signCheckpoint(this.keyPem, body),
    };
  }

  signed(lineHash: string): void {
    this.prevCheckpoint = lineHash;
    this.unsigned = 0;
    this.since = undefined;
    this.stop();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * The last checkpoint of the chain ending in `file` (its text already read), and how many lines follow
 * it: searched from the end, into the rotated files it continues only when this one has none.
 */
export function resumeFrom(file: string, text: string): Resumed {
  let unsigned = 0;
  let since: number | undefined;
  let current = file;
  for (let guard = 0; guard < 100_000; guard++) {
    for (let end = text.length; end > 0; ) {
      const start = text.lastIndexOf("\n", end - 2) + 1;
      const line = text.slice(start, end);
      end = start;
      const rec = parse(line);
      if (rec?.event === "checkpoint") return { prevCheckpoint: sha256(line), unsigned, since };
      unsigned++;
      if (typeof rec?.ts === "string" && !Number.isNaN(Date.parse(rec.ts))) since = Date.parse(rec.ts);
    }
    const prev = previousOf(current);
    if (!prev || !fs.existsSync(prev)) break;
    current = prev;
    text = fs.readFileSync(prev, "utf8");
  }
  return { prevCheckpoint: GENESIS, unsigned, since };
}

function parse(line: string): { event?: unknown; ts?: unknown } | undefined {
  try {
    return JSON.parse(line) as { event?: unknown; ts?: unknown };
  } catch {
    return undefined;
  }
}
