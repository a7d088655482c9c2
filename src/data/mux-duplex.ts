// A node Duplex over one stream of a data channel, for code that wants a node stream (a shell, the
// guest's stdin/stdout, the MCP shell channel). Received bytes count as consumed only when the reader
// takes them, so a slow reader holds back its own stream's window and no other.
import { Duplex } from "node:stream";
import { MuxReset } from "../wire/mux-frames.ts";
import type { MuxStream } from "./mux-stream.ts";

export class MuxDuplex extends Duplex {
  /** Bytes pushed to the reader and not yet consumed (granted back once it reads more). */
  private unread = 0;
  private writeCb: ((err?: Error | null) => void) | undefined;

  constructor(private readonly stream: MuxStream) {
    super({ allowHalfOpen: true });
    stream.attach({
      data: (chunk) => {
        this.unread += chunk.length;
        if (this.push(chunk)) this.release();
      },
      end: () => {
        this.push(null);
      },
      drain: () => {
        const cb = this.writeCb;
        this.writeCb = undefined;
        cb?.();
      },
      close: (reset) => {
        const cb = this.writeCb;
        this.writeCb = undefined;
        if (reset) {
          cb?.(new Error("the stream was cut"));
          this.destroy(new Error(`the stream was cut (${reset.remote ? "by the far end" : "here"})`));
        } else {
          cb?.();
          if (this.readableEnded) this.destroy();
          else this.once("end", () => this.destroy());
        }
      },
    });
  }

  /** The reader caught up: what it took is consumed (the peer may send that much more). */
  private release(): void {
    if (!this.unread) return;
    const n = this.unread;
    this.unread = 0;
    this.stream.consumed(n);
  }

  override _read(): void {
    this.release();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.stream.closed) return cb(new Error("the stream is closed"));
    // One write waits at a time: the stream holds back later ones until cb runs (on drain).
    if (this.stream.write(chunk)) cb();
    else this.writeCb = cb;
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.stream.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.stream.closed) this.stream.reset(MuxReset.cancel);
    cb(err);
  }
}
