// Append-only audit log: one JSON line an event, each chained to the previous line's SHA-256,
// written and fsync'd before the action it records is acknowledged.
import fs from "node:fs";
import { createHash } from "node:crypto";

export const GENESIS = "0".repeat(64);

export type AuditFields = Record<string, string | number | boolean | null | undefined>;

export class AuditLog {
  /** The fdatasync now running (group commit), and the one queued behind it for lines written meanwhile. */
  private syncing: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  /** Lines from appendSoon waiting for a sync: who to tell, and the timer that forces one. */
  private soon: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void; timer: ReturnType<typeof setTimeout> } | undefined;

  private constructor(
    private readonly fd: number,
    readonly path: string,
    private seq: number,
    private prev: string,
  ) {}

  static open(path: string): AuditLog {
    let seq = 0;
    let prev = GENESIS;
    let torn: string | undefined;
    if (fs.existsSync(path)) {
      let text = fs.readFileSync(path, "utf8");
      const cut = text.lastIndexOf("\n") + 1;
      if (cut < text.length) {
        // A crash mid-write leaves a torn last line: keep it aside for inspection, never build on it.
        torn = `${path}.torn-${Date.now()}`;
        fs.writeFileSync(torn, text.slice(cut), { mode: 0o600 });
        fs.truncateSync(path, Buffer.byteLength(text.slice(0, cut)));
        text = text.slice(0, cut);
      }
      const last = text.slice(text.lastIndexOf("\n", text.length - 2) + 1);
      if (last) {
        prev = sha256(last);
        seq = Number((JSON.parse(last) as { seq: number }).seq);
      }
    }
    const fd = fs.openSync(path, "a", 0o600);
    const log = new AuditLog(fd, path, seq, prev);
    if (torn) log.append("recovered", { tornLineMovedTo: torn });
    return log;
  }

  /** Writes one event durably; throws if the disk refuses, so the caller never acts unrecorded. */
  append(event: string, fields: AuditFields = {}): void {
    this.write(event, fields);
    fs.fdatasyncSync(this.fd);
  }

  /**
   * Group commit: writes the line now (its place in the chain is fixed at once) and resolves when a
   * fdatasync that began after the write has finished. Concurrent callers share one fsync, and the
   * event loop is not blocked while the disk works. Callers must not act on the event before it resolves.
   */
  appendDurable(event: string, fields: AuditFields = {}): Promise<void> {
    this.write(event, fields);
    return this.sync();
  }

  /**
   * For events that record what already happened and gate nothing (a stream's close): written now,
   * made durable by the next sync anyone asks for, and at the latest `withinMs` later. Sequential
   * streams then need one fsync each (their open) instead of two.
   */
  appendSoon(event: string, fields: AuditFields = {}, withinMs = 50): Promise<void> {
    this.write(event, fields);
    if (!this.soon) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
      this.soon = { promise, resolve, reject, timer: setTimeout(() => void this.sync().catch(() => {}), withinMs) };
    }
    return this.soon.promise;
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
      this.syncing = new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
      this.syncing.then(() => soon?.resolve(), (err) => soon?.reject(err));
      return this.syncing;
    });
    return this.queued;
  }

  private write(event: string, fields: AuditFields): void {
    const line = JSON.stringify({ seq: this.seq + 1, ts: new Date().toISOString(), event, ...dropUndefined(fields), prev: this.prev }) + "\n";
    fs.writeSync(this.fd, line);
    this.seq++;
    this.prev = sha256(line);
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
}

function dropUndefined(f: AuditFields): AuditFields {
  const out: AuditFields = {};
  for (const [k, v] of Object.entries(f)) if (v !== undefined) out[k] = v;
  return out;
}

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}
