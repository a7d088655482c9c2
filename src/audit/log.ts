// Append-only audit log: one JSON line an event, each chained to the previous line's SHA-256,
// written and fsync'd before the action it records is acknowledged.
import fs from "node:fs";
import { createHash } from "node:crypto";

export const GENESIS = "0".repeat(64);

export type AuditFields = Record<string, string | number | boolean | null | undefined>;

export class AuditLog {
  private constructor(
    private readonly fd: number,
    readonly path: string,
    private seq: number,
    private prev: string,
  ) {}

  static open(path: string): AuditLog {
    let seq = 0;
    let prev = GENESIS;
    if (fs.existsSync(path)) {
      const text = fs.readFileSync(path, "utf8");
      const lines = text.split("\n");
      // The last complete line gives the chain's head.
      const last = text.endsWith("\n") ? lines[lines.length - 2] : lines[lines.length - 2];
      if (last) {
        prev = sha256(last + "\n");
        seq = Number((JSON.parse(last) as { seq: number }).seq) || lines.length - 1;
      }
    }
    const fd = fs.openSync(path, "a", 0o600);
    return new AuditLog(fd, path, seq, prev);
  }

  /** Writes one event durably; throws if the disk refuses, so the caller never acts unrecorded. */
  append(event: string, fields: AuditFields = {}): void {
    const line = JSON.stringify({ seq: this.seq + 1, ts: new Date().toISOString(), event, ...dropUndefined(fields), prev: this.prev }) + "\n";
    fs.writeSync(this.fd, line);
    fs.fdatasyncSync(this.fd);
    this.seq++;
    this.prev = sha256(line);
  }

  close(): void {
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
