// What the audit log does while its disk refuses writes (ENOSPC, EDQUOT, EIO): the line that failed is
// already cut back to the last whole line (log.ts); here, new work that needs a line is refused with a
// clear error, lines that record an ending (which must happen whether or not the disk has room: a revoke,
// a stream's close) wait in a bounded backlog, and a timer tries again until the disk takes them.
import { RefusedError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { AuditFields } from "./log.ts";

const log = logger("audit");

/**
 * Events that record something ending or a peer coming back, never something new being allowed: they are
 * written late (with `happenedAt`) rather than refused, so a full disk never keeps a session from ending
 * and never ends one. Everything else (a request, an approval, a stream's opening, a code) is refused.
 */
const DEFERRABLE = new Set([
  "stream.close",
  "stream.fallback",
  "session.close",
  "session.detach",
  "session.idle",
  "session.resume",
  "share.away",
  "share.back",
  "share.close",
  "share.moved",
  "request.withdraw",
  "request.expire",
  "deny",
  "revoke",
  "refused",
  "code.mismatch",
  "direct.probe",
  "coordinator.start",
  "coordinator.stop",
]);

/** Lines kept while the disk is full; past it the oldest are dropped and counted in the resume line. */
export const MAX_BACKLOG = 10_000;
const RETRY_MS = 1_000;

export interface Deferred {
  event: string;
  fields: AuditFields;
  at: string;
}

/** A write the disk refused (after the partial line was cut back). */
export class AuditWriteError extends Error {
  override name = "AuditWriteError";
  constructor(readonly cause: unknown) {
    super(`the audit log could not be written: ${errorMessage(cause)}`);
  }
}

export interface RoomEvents {
  /** The disk just refused a line (the operator's and the hosts' warning). */
  onFull?: (message: string) => void;
  /** The disk took the waiting lines: work needing a line is accepted again. */
  onRoom?: (message: string) => void;
}

/** How the room writes through the log: a chained line (or AuditWriteError), and a sync (or AuditWriteError). */
export interface RoomIo {
  write(event: string, fields: AuditFields): void;
  sync(): void;
}

export class Room {
  private state: { since: number; cause: string; refused: number; lost: number } | undefined;
  readonly backlog: Deferred[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;

  constructor(
    private readonly events: RoomEvents,
    private readonly io: RoomIo,
  ) {}

  /**
   * Writes an event with `write` unless the disk refuses: the line is then already cut back (log.ts), and
   * the event is kept for later (an ending: false) or refused with a clear error. True: written.
   */
  guard(event: string, fields: AuditFields, now: number, write: () => void): boolean {
    if (this.admit(event, fields, now)) return false;
    try {
      write();
      return true;
    } catch (err) {
      if (!(err instanceof AuditWriteError)) throw err;
      log.error(`audit log: ${err.message}`);
      this.enter(err, now);
      if (this.admit(event, fields, now)) return false;
      throw this.refusal();
    }
  }

  /** At close: one more try for the endings still waiting; what the disk still refuses is said, not lost silently. */
  lastTry(): void {
    if (!this.state) return;
    try {
      this.retry();
    } catch {
      log.error(`audit log: ${this.backlog.length} line(s) waiting for disk space were not written`);
    }
  }

  /** The deferred lines, then a line saying what the outage refused, durably; throws while the disk still refuses. */
  private retry(): void {
    const outage = this.outage;
    if (!outage) return;
    while (this.backlog.length) {
      const d = this.backlog[0]!;
      this.io.write(d.event, { ...d.fields, happenedAt: d.at });
      this.backlog.shift();
    }
    this.io.write("audit.resume", outage);
    this.io.sync();
    log.info(`audit log: the disk has room again (full since ${outage.fullSince}; ${outage.refused} refused)`);
    this.leave();
  }

  get full(): boolean {
    return this.state !== undefined;
  }

  /** Why work is refused now (for /healthz), or undefined. */
  get trouble(): string | undefined {
    return this.state && this.message();
  }

  /** What the resume line says about the outage. */
  get outage(): { fullSince: string; refused: number; deferred: number; lost: number } | undefined {
    const s = this.state;
    return (
      s && {
        fullSince: new Date(s.since).toISOString(),
        refused: s.refused,
        deferred: this.backlog.length,
        lost: s.lost,
      }
    );
  }

  enter(err: AuditWriteError, now: number): void {
    // A stopped room (a closed log) never starts retrying: its file descriptor is gone.
    if (this.state || this.stopped) return;
    this.state = { since: now, cause: errorMessage(err.cause), refused: 0, lost: 0 };
    this.events.onFull?.(this.message());
    this.timer = setInterval(() => this.tryAgain(), RETRY_MS);
    this.timer.unref?.();
  }

  /**
   * While full: an ending is kept for later (true), anything else is refused (throws). Not full: false,
   * the caller writes as usual.
   */
  admit(event: string, fields: AuditFields, now: number): boolean {
    if (!this.state) return false;
    if (DEFERRABLE.has(event)) {
      if (this.backlog.length >= MAX_BACKLOG) {
        this.backlog.shift();
        this.state.lost++;
      }
      this.backlog.push({ event, fields, at: new Date(now).toISOString() });
      return true;
    }
    this.state.refused++;
    throw this.refusal();
  }

  refusal(): RefusedError {
    return new RefusedError("audit_full", this.message());
  }

  /** The retry wrote everything: work is accepted again. */
  leave(): void {
    if (!this.state) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.state = undefined;
    this.events.onRoom?.("the coordinator's audit disk has room again: requests, approvals and new streams work again");
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tryAgain(): void {
    try {
      this.retry();
    } catch (err) {
      if (!(err instanceof AuditWriteError)) throw err;
    }
  }

  private message(): string {
    const s = this.state!;
    const full = /ENOSPC|EDQUOT|no space|quota/i.test(s.cause);
    return `the coordinator's audit ${full ? "disk is full" : `log cannot be written (${s.cause})`}; new requests, approvals and streams are refused until the operator frees space (open sessions go on)`;
  }
}

/** Whether an event may wait for room (exported for tests). */
export function deferrable(event: string): boolean {
  return DEFERRABLE.has(event);
}
