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
    // A sync already running may have started before this write: ride on the next one.
    this.queued ??= (this.syncing ?? Promise.resolve()).catch(() => {}).then(() => {
      this.queued = undefined;
      this.syncing = new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
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
    // Lines written through appendDurable may still await their fsync: make them durable first.
    fs.fdatasyncSync(this.fd);
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
