// Append-only audit log: one JSON line an event, each chained to the previous line's SHA-256,
// written and fsync'd before the action it records is acknowledged.
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { signCheckpoint } from "./checkpoint.ts";
import { escapeUnsafe } from "../wire/untrusted-text.ts";

export const GENESIS = "0".repeat(64);

export type AuditFields = Record<string, string | number | boolean | null | undefined>;

export interface AuditOptions {
  /** Start a new file once the current one passes this many bytes (0: never). */
  rotateBytes?: number;
  /** Every this many events, append a checkpoint line signed with `signingKeyPem` (0: never). */
  checkpointEvery?: number;
  signingKeyPem?: string;
}

export class AuditLog {
  private sinceCheckpoint = 0;
  /** The fdatasync now running (group commit), the one queued behind it, and appendSoon's waiters. */
  private syncing: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private soon: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void; timer: ReturnType<typeof setTimeout> } | undefined;

  private constructor(
    private fd: number,
    private size: number,
    readonly path: string,
    private seq: number,
    private prev: string,
    private readonly o: AuditOptions,
  ) {}

  static open(file: string, o: AuditOptions = {}): AuditLog {
    let seq = 0;
    let prev = GENESIS;
    let torn: string | undefined;
    if (fs.existsSync(file)) {
      let text = fs.readFileSync(file, "utf8");
      const cut = text.lastIndexOf("\n") + 1;
      if (cut < text.length) {
        // A crash mid-write leaves a torn last line: keep it aside for inspection, never build on it.
        torn = `${file}.torn-${Date.now()}`;
        fs.writeFileSync(torn, text.slice(cut), { mode: 0o600 });
        fs.truncateSync(file, Buffer.byteLength(text.slice(0, cut)));
        text = text.slice(0, cut);
      }
      const last = text.slice(text.lastIndexOf("\n", text.length - 2) + 1);
      if (last) {
        prev = sha256(last);
        seq = Number((JSON.parse(last) as { seq: number }).seq);
      }
    }
    const fd = fs.openSync(file, "a", 0o600);
    const log = new AuditLog(fd, fs.fstatSync(fd).size, file, seq, prev, o);
    if (torn) log.append("recovered", { tornLineMovedTo: torn });
    return log;
  }

  /** Writes one event durably; throws if the disk refuses, so the caller never acts unrecorded. */
  append(event: string, fields: AuditFields = {}): void {
    this.beforeWrite();
    this.write(event, fields);
    fs.fdatasyncSync(this.fd);
    this.afterWrite(true);
  }

  /**
   * Group commit: writes the line now (its place in the chain is fixed at once) and resolves when a
   * fdatasync that began after the write has finished. Concurrent callers share one fsync, and the
   * event loop is not blocked while the disk works. Callers must not act on the event before it resolves.
   */
  appendDurable(event: string, fields: AuditFields = {}): Promise<void> {
    this.beforeWrite();
    this.write(event, fields);
    this.afterWrite(false);
    return this.sync();
  }

  /**
   * For events that record what already happened and gate nothing (a stream's close): written now,
   * made durable by the next sync anyone asks for, and at the latest `withinMs` later. Sequential
   * streams then need one fsync each (their open) instead of two.
   */
  appendSoon(event: string, fields: AuditFields = {}, withinMs = 50): Promise<void> {
    this.beforeWrite();
    this.write(event, fields);
    this.afterWrite(false);
    if (!this.soon) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
      this.soon = { promise, resolve, reject, timer: setTimeout(() => void this.sync().catch(() => {}), withinMs) };
    }
    return this.soon.promise;
  }

  /** Signs the chain so far: whoever holds the coordinator's certificate can check nothing before it changed. */
  checkpoint(): void {
    if (!this.o.signingKeyPem) return;
    this.writeCheckpoint();
    fs.fdatasyncSync(this.fd);
  }

  /**
   * Moves the current file aside as `<file>.<seq of its last line>` and starts a new one whose first
   * line carries on the chain: its `prev` is the hash of the old file's last line.
   */
  rotate(): string {
    const old = `${this.path}.${String(this.seq).padStart(12, "0")}`;
    // Everything written to the old file is made durable here, whatever group sync is still pending.
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    fs.renameSync(this.path, old);
    this.fd = fs.openSync(this.path, "a", 0o600);
    this.size = 0;
    this.write("rotate", { previousFile: path.basename(old) });
    fs.fdatasyncSync(this.fd);
    syncDir(path.dirname(this.path));
    return old;
  }

  /** Resolves when a fdatasync that began after every line written so far has finished (group commit). */
  private sync(): Promise<void> {
    // A sync already running may have started before the last write: ride on the next one, which
    // also covers the lines waiting from appendSoon.
    this.queued ??= (this.syncing ?? Promise.resolve()).catch(() => {}).then(() => {
      this.queued = undefined;
      const soon = this.soon;
      this.soon = undefined;
      if (soon) clearTimeout(soon.timer);
      const fd = this.fd;
      this.syncing = new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => {
        // A rotation synced and closed that file already: its lines are durable.
        if (err && !(err.code === "EBADF" && fd !== this.fd)) reject(err);
        else resolve();
      }));
      this.syncing.then(() => soon?.resolve(), (err) => soon?.reject(err));
      return this.syncing;
    });
    return this.queued;
  }

  private beforeWrite(): void {
    if (this.o.rotateBytes && this.size >= this.o.rotateBytes) this.rotate();
  }

  /** Every N events a signed checkpoint follows, made durable with the line before it. */
  private afterWrite(sync: boolean): void {
    if (!this.o.checkpointEvery || !this.o.signingKeyPem || ++this.sinceCheckpoint < this.o.checkpointEvery) return;
    this.writeCheckpoint();
    if (sync) fs.fdatasyncSync(this.fd);
  }

  private writeCheckpoint(): void {
    this.sinceCheckpoint = 0;
    this.write("checkpoint", { sig: signCheckpoint(this.o.signingKeyPem!, this.seq + 1, this.prev) });
  }

  close(): void {
    // Lines written through appendDurable or appendSoon may still await their fsync: make them durable first.
    const soon = this.soon;
    this.soon = undefined;
    if (soon) clearTimeout(soon.timer);
    fs.fdatasyncSync(this.fd);
    soon?.resolve();
    fs.closeSync(this.fd);
  }

  private write(event: string, fields: AuditFields): void {
    const line = JSON.stringify({ seq: this.seq + 1, ts: new Date().toISOString(), event, ...dropUndefined(fields), prev: this.prev }) + "\n";
    const bytes = Buffer.from(line);
    fs.writeSync(this.fd, bytes);
    this.size += bytes.length;
    this.seq++;
    this.prev = sha256(bytes);
  }
}

/** Fields as written: undefined left out, and no string carries a control or bidi character (a peer chose some). */
function dropUndefined(f: AuditFields): AuditFields {
  const out: AuditFields = {};
  for (const [k, v] of Object.entries(f)) if (v !== undefined) out[k] = typeof v === "string" ? escapeUnsafe(v) : v;
  return out;
}

export function sha256(s: string | Uint8Array): string {
  return createHash("sha256").update(s).digest("hex");
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
