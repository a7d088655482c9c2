// What the coordinator's signatures cover in a chain: each checkpoint's signature, the chain of
// checkpoints, the signing promise they carry (every N events, within T of any event), and the
// unsigned tail after the last one, told in plain words.
import type { KeyObject } from "node:crypto";
import * as v from "valibot";
import { GENESIS } from "./files.ts";
import { CheckpointFields, publicKeyOf, verifyCheckpoint, verifyLegacyCheckpoint } from "./checkpoint.ts";
import type { AuditLine, Breakage } from "./line.ts";

export interface Finding {
  kind: Breakage;
  message: string;
}

interface Checkpoint {
  seq: number;
  ts: string;
  hash: string;
  reason?: string;
  every: number;
  intervalMs: number;
}

interface Run {
  events: number;
  firstSeq: number;
  lastSeq: number;
  since: string;
  sinceMs: number;
  until: string;
}

export interface CoverageSummary {
  lastCheckpoint?: { seq: number; ts: string; reason?: string };
  /** Events after the last checkpoint: nothing signed vouches for them. */
  unsigned?: { events: number; firstSeq: number; lastSeq: number; since: string; until: string };
  /** What the last checkpoint promised: a checkpoint at most every `every` events and `intervalMs` after an event (0: no promise). */
  policy?: { every: number; intervalMs: number };
  /** The log ends with the checkpoint of a clean stop. */
  cleanStop: boolean;
  warnings: string[];
}

export class Coverage {
  checkpoints = 0;
  private readonly key: KeyObject | undefined;
  private last: Checkpoint | undefined;
  private run: Run | undefined;

  /** `continued`: the chain continues from a file that is not here, so its first checkpoint's link is not checked. */
  constructor(
    certPem: string | undefined,
    private readonly continued: boolean,
  ) {
    this.key = certPem === undefined ? undefined : publicKeyOf(certPem);
  }

  /** Takes the next line of the chain (already checked for seq and prev); returns what is wrong with it. */
  line(rec: AuditLine, hash: string): Finding | undefined {
    return rec.event === "checkpoint" ? this.checkpoint(rec, hash) : this.event(rec);
  }

  private checkpoint(rec: AuditLine, hash: string): Finding | undefined {
    this.checkpoints++;
    const f = v.safeParse(CheckpointFields, rec);
    const sig = String((rec as { sig?: unknown }).sig ?? "");
    if (this.key) {
      if (!f.success) {
        // Checkpoints from before they were chained sign only (seq, prev); they promise nothing further.
        if ("prevCheckpoint" in rec || !verifyLegacyCheckpoint(this.key, rec.seq, rec.prev, sig))
          return bad("bad-signature", "is a checkpoint whose signature does not verify with the given certificate");
      } else {
        const c = f.output;
        if (
          !verifyCheckpoint(
            this.key,
            {
              seq: rec.seq,
              ts: rec.ts,
              prev: rec.prev,
              prevCheckpoint: c.prevCheckpoint,
              reason: c.reason,
              every: c.every,
              intervalMs: c.intervalMs,
            },
            sig,
          )
        ) {
          return bad("bad-signature", "is a checkpoint whose signature does not verify with the given certificate");
        }
        const expected = this.last?.hash ?? (this.continued ? c.prevCheckpoint : GENESIS);
        if (c.prevCheckpoint !== expected) {
          const was = this.last ? `the checkpoint at seq ${this.last.seq}` : "none (this log's first)";
          return bad(
            "removed",
            `is a checkpoint signed after a different previous checkpoint than ${was}: checkpoints were removed or this log was spliced`,
          );
        }
      }
    }
    this.last = f.success
      ? {
          seq: rec.seq,
          ts: rec.ts,
          hash,
          reason: f.output.reason,
          every: f.output.every,
          intervalMs: f.output.intervalMs,
        }
      : { seq: rec.seq, ts: rec.ts, hash, every: 0, intervalMs: 0 };
    this.run = undefined;
    return undefined;
  }

  private event(rec: AuditLine): Finding | undefined {
    const ms = Date.parse(rec.ts);
    const run = (this.run ??= {
      events: 0,
      firstSeq: rec.seq,
      lastSeq: rec.seq,
      since: rec.ts,
      sinceMs: ms,
      until: rec.ts,
    });
    run.events++;
    run.lastSeq = rec.seq;
    run.until = rec.ts;
    // The promise is only worth something when its signature was checked.
    const p = this.key ? this.last : undefined;
    if (!p) return undefined;
    if (p.every > 0 && run.events > p.every) {
      return bad(
        "missing-checkpoint",
        `makes ${run.events} events without a checkpoint (seq ${run.firstSeq}-${rec.seq}), but the coordinator signs at least every ${p.every} events (its checkpoint at seq ${p.seq} says so): a checkpoint was removed`,
      );
    }
    if (p.intervalMs > 0 && ms - run.sinceMs > p.intervalMs) {
      return bad(
        "missing-checkpoint",
        `was written ${duration(ms - run.sinceMs)} after seq ${run.firstSeq} (${run.since}) with no checkpoint between, but the coordinator signs within ${duration(p.intervalMs)} of every event (its checkpoint at seq ${p.seq} says so): a checkpoint was removed, or line times were edited`,
      );
    }
    return undefined;
  }

  /**
   * After the last line: a failure (nothing signed at all), or the summary and its warnings. `headSeq`:
   * the file reaches the coordinator's signed head there, which vouches for every line up to it.
   */
  finish(now: number, headSeq?: number): Finding | CoverageSummary {
    const last = this.last;
    const run = this.run;
    const s: CoverageSummary = { cleanStop: !run && last?.reason === "stop", warnings: [] };
    if (last) {
      s.lastCheckpoint = { seq: last.seq, ts: last.ts, reason: last.reason };
      s.policy = { every: last.every, intervalMs: last.intervalMs };
    }
    if (run)
      s.unsigned = {
        events: run.events,
        firstSeq: run.firstSeq,
        lastSeq: run.lastSeq,
        since: run.since,
        until: run.until,
      };
    if (!this.key) return s;
    if (!last) {
      return {
        kind: "unsigned",
        message:
          "no signed start: no line of this log is signed by the coordinator (it has no checkpoint). A coordinator signs the first line of every log it writes, so these lines were not written by it, or its checkpoints were removed and the chain rebuilt",
      };
    }
    const check = "Check it against the running coordinator: --against http://COORDINATOR:8080";
    if (headSeq !== undefined && headSeq >= (run?.lastSeq ?? last.seq)) return s;
    if (run) {
      const span = run.firstSeq === run.lastSeq ? `seq ${run.firstSeq}` : `seq ${run.firstSeq}-${run.lastSeq}`;
      const [they, are] = run.events === 1 ? ["it", "is"] : ["they", "are"];
      const within = last.intervalMs > 0 ? ` (it signs within ${duration(last.intervalMs)})` : "";
      const why =
        last.intervalMs > 0 && now - run.sinceMs > last.intervalMs
          ? `A running coordinator would have signed ${they === "it" ? "it" : "them"} by ${new Date(run.sinceMs + last.intervalMs).toISOString()}: it crashed after seq ${run.lastSeq}, or lines after seq ${run.lastSeq} were removed.`
          : `That is expected while the coordinator runs${within} or after a crash; otherwise lines after seq ${run.lastSeq} were removed.`;
      s.warnings.push(
        `the last ${run.events} event${run.events === 1 ? "" : "s"} (${span}, since ${run.since}) ${are} not covered by a signed checkpoint, so nothing shows ${they} ${are} as the coordinator wrote ${they === "it" ? "it" : "them"}. ${why} ${check}`,
      );
    } else if (last.reason !== undefined && last.reason !== "stop") {
      s.warnings.push(
        `the log ends at a checkpoint the coordinator wrote while running (seq ${last.seq}, ${last.ts}, ${last.reason}), not at a clean stop: expected while it runs or after a crash; otherwise lines after seq ${last.seq} were removed. ${check}`,
      );
    }
    return s;
  }
}

function bad(kind: Breakage, message: string): Finding {
  return { kind, message };
}

/** 70000 -> "1m10s", 60000 -> "1m", 500 -> "500ms". */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = Math.round(((ms % 60_000) / 1000) * 10) / 10;
  return `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${s ? `${s}s` : ""}` || "0s";
}
