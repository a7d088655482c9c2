// Append-only audit log: one JSON line an event, each chained to the previous line's SHA-256,
// written and fsync'd before the action it records is acknowledged; signed checkpoints (signer.ts).
import fs from "node:fs";
import path from "node:path";
import { GENESIS, sha256 } from "./files.ts";
import { signHead, type AuditHead, type CheckpointReason } from "./checkpoint.ts";
import { resumeFrom, Signer } from "./signer.ts";
import { logger } from "../log.ts";
import { errorMessage, TesseraError } from "../errors.ts";
import { escapeUnsafe } from "../wire/untrusted-text.ts";
import { AuditWriteError, Room, type RoomEvents } from "./room.ts";
import { readEnd, setTornAside } from "./reopen.ts";

export { GENESIS, sha256 };

const log = logger("audit");

export type AuditFields = Record<string, string | number | boolean | null | undefined>;

export interface AuditOptions extends RoomEvents {
  /** Start a new file once the current one passes this many bytes (0: never). */
  rotateBytes?: number;
  /** Every this many events, append a checkpoint line signed with `signingKeyPem` (0: never). */
  checkpointEvery?: number;
  /**
   * Sign the log's first line (a checkpoint when a log is started or reopened) and every line at most
   * this long after it is written, so a verifier can tell a cut or forged log (0: neither, only the
   * count, as coordinators did before; a verifier can then only require some checkpoint).
   */
  checkpointIntervalMs?: number;
  signingKeyPem?: string;
  /** The clock for line times and the interval (tests drive it). */
  now?: () => number;
  /**
   * Write nothing at open: the run's first lines (its signed opening, a torn line's report) wait for
   * begin() or the first event, so a coordinator that fails to start (a port taken) leaves the log as it was.
   */
  quiet?: boolean;
}

interface Point {
  seq: number;
  hash: string;
  ts: string;
}

export class AuditLog {
  private readonly signer: Signer | undefined;
  private readonly now: () => number;
  /** The last line known to be on disk, which is what the signed head states. */
  private durable: Point;
  private closed = false;
  /** What the disk's refusals put in place: refused work, deferred endings, retries (room.ts). */
  private readonly room: Room;
  /** A rotation whose new file's first lines the disk refused: owed before anything else (startRotated). */
  private rotatedFrom: string | undefined;
  /** The run's opening lines, not yet written (quiet open). */
  private opening: { checkpoint?: CheckpointReason; torn?: { text: string; keep: number } } | undefined;
  /** The fdatasync now running (group commit), the one queued behind it, and appendSoon's waiters. */
  private syncing: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private soon:
    | {
        promise: Promise<void>;
        resolve: () => void;
        reject: (e: unknown) => void;
        timer: ReturnType<typeof setTimeout>;
      }
    | undefined;

  private constructor(
    private fd: number,
    private size: number,
    readonly path: string,
    private seq: number,
    private prev: string,
    private lastTs: string,
    private readonly o: AuditOptions,
  ) {
    this.now = o.now ?? Date.now;
    this.durable = { seq, hash: prev, ts: lastTs };
    this.room = new Room(o, {
      write: (event, fields) => this.writeEvent(event, fields),
      sync: () => this.syncNow(),
    });
    if (o.signingKeyPem)
      this.signer = new Signer(o.signingKeyPem, o.checkpointEvery ?? 0, o.checkpointIntervalMs ?? 0, () =>
        this.onInterval(),
      );
  }

  static open(file: string, o: AuditOptions = {}): AuditLog {
    // A torn last line (a crash mid-write) is never built on; begin() moves it aside, kept for inspection.
    const { seq, prev, lastTs, text, torn } = readEnd(file);
    const fd = fs.openSync(file, "a", 0o600);
    const audit = new AuditLog(fd, torn?.keep ?? fs.fstatSync(fd).size, file, seq, prev, lastTs, o);
    audit.opening = {};
    if (audit.signer) {
      audit.signer.resume(resumeFrom(file, text));
      // The first line of every run is signed: a log with no signature at all was not written here.
      if (audit.signer.intervalMs > 0) audit.opening.checkpoint = seq === 0 ? "start" : "open";
    }
    if (torn) audit.opening.torn = torn;
    if (!o.quiet) audit.begin();
    return audit;
  }

  /** Writes the run's opening lines (a quiet open defers them to here, or to the first event). */
  begin(): void {
    const o = this.opening;
    if (!o) return;
    let tornFile: string | undefined;
    if (o.torn) {
      tornFile = setTornAside(this.path, this.fd, o.torn);
      o.torn = undefined;
    }
    if (o.checkpoint) {
      this.writeCheckpoint(o.checkpoint, this.now());
      o.checkpoint = undefined;
    }
    if (tornFile) this.write("recovered", { tornLineMovedTo: tornFile }, this.now());
    this.opening = undefined;
    fs.fdatasyncSync(this.fd);
    this.durable = this.point();
  }

  /** The seq of the last line written (durable or about to be). */
  get lastSeq(): number {
    return this.seq;
  }

  /** Why work that needs an audit line is refused now (the disk is full), or undefined. */
  get trouble(): string | undefined {
    return this.room.trouble;
  }

  /** Writes one event durably; throws if the disk refuses, so the caller never acts unrecorded. */
  append(event: string, fields: AuditFields = {}): void {
    if (!this.guard(event, fields)) return;
    try {
      fs.fdatasyncSync(this.fd);
    } catch (err) {
      throw this.syncFailed(err);
    }
    this.durable = this.point();
  }

  /**
   * Group commit: writes the line now (its place in the chain is fixed at once) and resolves when a
   * fdatasync that began after the write has finished. Concurrent callers share one fsync, and the
   * event loop is not blocked while the disk works. Callers must not act on the event before it resolves.
   */
  appendDurable(event: string, fields: AuditFields = {}): Promise<void> {
    if (!this.guard(event, fields)) return Promise.resolve();
    return this.sync();
  }

  /**
   * For events that record what already happened and gate nothing (a stream's close): written now,
   * made durable by the next sync anyone asks for, and at the latest `withinMs` later. Sequential
   * streams then need one fsync each (their open) instead of two.
   */
  appendSoon(event: string, fields: AuditFields = {}, withinMs = 50): Promise<void> {
    if (!this.guard(event, fields)) return Promise.resolve();
    if (!this.soon) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.soon = { promise, resolve, reject, timer: setTimeout(() => void this.sync().catch(() => {}), withinMs) };
    }
    return this.soon.promise;
  }

  /** Signs the chain so far (by default as a clean stop): whoever holds the coordinator's certificate can check nothing before it changed. */
  checkpoint(reason: CheckpointReason = "stop"): void {
    if (!this.signer || this.room.full) return;
    this.begin();
    this.writeCheckpoint(reason, this.now());
    fs.fdatasyncSync(this.fd);
    this.durable = this.point();
  }

  /** The last line on disk (seq, its hash, its time), signed now with the coordinator key; undefined without a key. */
  signedHead(): AuditHead | undefined {
    if (!this.o.signingKeyPem) return undefined;
    return signHead(this.o.signingKeyPem, { ...this.durable, at: new Date(this.now()).toISOString() });
  }

  /**
   * Moves the current file aside as `<file>.<seq of its last line>` and starts a new one whose first
   * line carries on the chain: its `prev` is the hash of the old file's last line. With a key, the old
   * file ends signed and the new one starts signed, so each verifies on its own.
   */
  rotate(now = this.now()): string {
    if (this.signer?.pending) this.writeCheckpoint("rotate", now);
    const old = `${this.path}.${String(this.seq).padStart(12, "0")}`;
    // Everything written to the old file is made durable here, whatever group sync is still pending.
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    fs.renameSync(this.path, old);
    this.fd = fs.openSync(this.path, "a", 0o600);
    this.size = 0;
    this.rotatedFrom = path.basename(old);
    this.startRotated(now);
    return old;
  }

  /**
   * The new file's first lines: the rotation (its chain's link to the old file) and a checkpoint. A disk
   * that refuses them leaves the new file empty and this owed: the next write starts with them, so no file
   * ever begins with anything but its rotate line.
   */
  private startRotated(now: number): void {
    const from = this.rotatedFrom;
    if (from === undefined) return;
    this.write("rotate", { previousFile: from }, now);
    this.rotatedFrom = undefined;
    if (this.signer) this.writeCheckpoint("rotate", now);
    fs.fdatasyncSync(this.fd);
    syncDir(path.dirname(this.path));
    this.durable = this.point();
  }

  /** Resolves when a fdatasync that began after every line written so far has finished (group commit). */
  private sync(): Promise<void> {
    // A sync already running may have started before the last write: ride on the next one, which
    // also covers the lines waiting from appendSoon.
    this.queued ??= (this.syncing ?? Promise.resolve())
      .catch(() => {})
      .then(() => {
        this.queued = undefined;
        const soon = this.soon;
        this.soon = undefined;
        if (soon) clearTimeout(soon.timer);
        const fd = this.fd;
        const upto = this.point();
        this.syncing = new Promise<void>((resolve, reject) =>
          fs.fdatasync(fd, (err) => {
            // A rotation or close synced and closed that file already: its lines are durable.
            if (err && !(err.code === "EBADF" && (fd !== this.fd || this.closed))) return reject(this.syncFailed(err));
            if (upto.seq > this.durable.seq) this.durable = upto;
            resolve();
          }),
        );
        this.syncing.then(
          () => soon?.resolve(),
          (err) => soon?.reject(err),
        );
        return this.syncing;
      });
    return this.queued;
  }

  /**
   * One event line, with the checkpoints it makes due: rotation and the interval before it (an event
   * never lands more than the interval after an unsigned one), the count after it.
   */
  private writeEvent(event: string, fields: AuditFields): void {
    const now = this.now();
    this.begin();
    if (this.rotatedFrom !== undefined) this.startRotated(now);
    else if (this.o.rotateBytes && this.size >= this.o.rotateBytes) this.rotate(now);
    else if (this.signer?.intervalDue(now)) this.writeCheckpoint("interval", now);
    this.write(event, fields, now);
    try {
      if (this.signer?.countDue()) this.writeCheckpoint("count", now);
    } catch (err) {
      // The event is on disk; the checkpoint it made due stays due and comes with the next line.
      if (!(err instanceof AuditWriteError)) throw err;
      this.room.enter(err, now);
    }
  }

  /** Writes an event unless the disk refuses (then kept for later or refused: room.ts). True: written. */
  private guard(event: string, fields: AuditFields): boolean {
    return this.room.guard(event, fields, this.now(), () => this.writeEvent(event, fields));
  }

  /** fsync failed: the lines may or may not be on disk; nothing new is acknowledged until a retry gets through. */
  private syncFailed(err: unknown): unknown {
    const e = new AuditWriteError(err);
    if (this.closed) return e;
    log.error(`audit log: could not sync: ${errorMessage(err)}`);
    this.room.enter(e, this.now());
    return this.room.refusal();
  }

  /** Durably, or an AuditWriteError (the room's retry: its lines are on disk before work is accepted again). */
  private syncNow(): void {
    if (this.closed) throw new AuditWriteError(new Error("the audit log is closed"));
    try {
      fs.fdatasyncSync(this.fd);
    } catch (err) {
      throw new AuditWriteError(err);
    }
    this.durable = this.point();
  }

  private writeCheckpoint(reason: CheckpointReason, now: number): void {
    const ts = new Date(now).toISOString();
    this.write("checkpoint", this.signer!.fields(this.seq + 1, ts, this.prev, reason), now);
    this.signer!.signed(this.prev);
  }

  /** The timer: lines have waited the whole interval unsigned, and no write came to sign them. */
  private onInterval(): void {
    if (this.closed || !this.signer?.pending) return;
    try {
      this.writeCheckpoint("interval", this.now());
      this.sync().catch((e: unknown) => log.error(`audit log: could not sync a checkpoint: ${String(e)}`));
    } catch (e) {
      log.error(`audit log: could not write a checkpoint: ${String(e)}`);
    }
  }

  close(): void {
    // A last try for endings that waited for room; what the disk still refuses is said, not lost silently.
    this.room.lastTry();
    this.closed = true;
    this.signer?.stop();
    this.room.stop();
    // Lines written through appendDurable or appendSoon may still await their fsync: make them durable first.
    const soon = this.soon;
    this.soon = undefined;
    if (soon) clearTimeout(soon.timer);
    fs.fdatasyncSync(this.fd);
    this.durable = this.point();
    soon?.resolve();
    fs.closeSync(this.fd);
  }

  private point(): Point {
    return { seq: this.seq, hash: this.prev, ts: this.lastTs };
  }

  private write(event: string, fields: AuditFields, now: number): void {
    // After close the fd number may already belong to another file or socket of this process: writing
    // through it would put an audit line into someone else's bytes.
    if (this.closed) throw new TesseraError("audit_closed", `the audit log is closed; "${event}" was not written`);
    const ts = new Date(now).toISOString();
    const line = `${JSON.stringify({ seq: this.seq + 1, ts, event, ...dropUndefined(fields), prev: this.prev })}\n`;
    const bytes = Buffer.from(line);
    try {
      // A short write (a disk filling up) is carried on; a refused one is cut back to the last whole line.
      for (let off = 0; off < bytes.length; ) off += fs.writeSync(this.fd, bytes, off, bytes.length - off);
    } catch (err) {
      try {
        fs.ftruncateSync(this.fd, this.size);
      } catch (e) {
        log.error(`audit log: could not cut a failed line back: ${errorMessage(e)}`);
      }
      throw new AuditWriteError(err);
    }
    this.size += bytes.length;
    this.seq++;
    this.prev = sha256(bytes);
    this.lastTs = ts;
    if (event !== "checkpoint") this.signer?.wrote(now);
  }
}

/** Fields as written: undefined left out, and no string carries a control or bidi character (a peer chose some). */
function dropUndefined(f: AuditFields): AuditFields {
  const out: AuditFields = {};
  for (const [k, v] of Object.entries(f)) if (v !== undefined) out[k] = typeof v === "string" ? escapeUnsafe(v) : v;
  return out;
}

function syncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  } catch {
    // Not every platform can fsync a directory; the rename is still atomic.
  }
}
