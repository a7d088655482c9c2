// Writes one shell session as an asciicast v2 file on the host: the only place that sees the plaintext.
import fs from "node:fs";
import path from "node:path";
import { ASCIICAST_VERSION } from "./asciicast.ts";

export interface RecordingInfo {
  sessionId: string;
  cols: number;
  rows: number;
  title: string;
  env: Record<string, string>;
}

export class Recorder {
  private readonly decoder = new TextDecoder("utf-8"); // streaming: a character split across chunks stays whole
  private readonly started = performance.now();
  private closed = false;

  private constructor(
    private readonly fd: number,
    readonly file: string,
  ) {}

  /** Creates DIR/SESSION.cast (0600, never overwriting) in a 0700 directory. */
  static open(dir: string, info: RecordingInfo): Recorder {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, `${info.sessionId}.cast`);
    const fd = fs.openSync(file, "wx", 0o600);
    const r = new Recorder(fd, file);
    const header = {
      version: ASCIICAST_VERSION,
      width: info.cols,
      height: info.rows,
      timestamp: Math.floor(Date.now() / 1000),
      title: info.title,
      env: info.env,
    };
    r.line(header);
    return r;
  }

  output(data: Uint8Array): void {
    const text = this.decoder.decode(data, { stream: true });
    if (text) this.event("o", text);
  }

  resize(cols: number, rows: number): void {
    this.event("r", `${cols}x${rows}`);
  }

  close(): void {
    if (this.closed) return;
    const rest = this.decoder.decode();
    if (rest) this.event("o", rest);
    this.closed = true;
    fs.closeSync(this.fd);
  }

  private event(code: string, data: string): void {
    const t = Math.round(performance.now() - this.started) / 1000;
    this.line([t, code, data]);
  }

  private line(value: unknown): void {
    if (this.closed) return;
    fs.writeSync(this.fd, `${JSON.stringify(value)}\n`);
  }
}
