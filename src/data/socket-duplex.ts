// A node Duplex over a Bun native socket: node:tls needs a stream to wrap (the coordinator's control
// plane), and a shell or stdin/stdout takes a stream too. Cheap enough off the bulk-forwarding path.
import { Duplex } from "node:stream";
import type { Socket } from "bun";
import type { End, SocketSink } from "./pipe.ts";

export class SocketDuplex extends Duplex implements SocketSink {
  private pending: Uint8Array | undefined;
  private pendingCb: ((err?: Error | null) => void) | undefined;
  private eof = false;

  constructor(private readonly sock: Socket<unknown>) {
    super({ allowHalfOpen: true });
  }

  /** Bytes from the socket; pauses the socket while the reader is behind. */
  feed(chunk: Uint8Array): void {
    if (!this.push(Buffer.from(chunk))) this.sock.pause();
  }

  /** The socket's write side has room again. */
  drained(): void {
    const p = this.pending;
    if (!p) return;
    const n = this.sock.write(p);
    if (n < 0) return this.failWrite();
    if (n < p.length) {
      this.pending = p.subarray(n);
      return;
    }
    const cb = this.pendingCb;
    this.pending = undefined;
    this.pendingCb = undefined;
    cb?.();
  }

  /** The peer half-closed. */
  ended(): void {
    if (this.eof) return;
    this.eof = true;
    this.push(null);
  }

  /**
   * The socket is gone. A clean close lets the reader take what is still buffered first (and the
   * end); a cut destroys the stream at once.
   */
  gone(clean: boolean): void {
    if (!clean) return void this.destroy(new Error("the stream was cut"));
    if (this.readableEnded) return void this.destroy();
    if (!this.eof) this.ended();
    this.once("end", () => this.destroy());
  }

  override _read(): void {
    this.sock.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const n = this.sock.write(chunk);
    if (n < 0) return cb(new Error("socket closed"));
    if (n < chunk.length) {
      // One write waits at a time: the stream holds back later ones until cb runs.
      this.pending = Buffer.from(chunk.subarray(n));
      this.pendingCb = cb;
      return;
    }
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.sock.shutdown();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.sock.terminate();
    cb(err);
  }

  private failWrite(): void {
    const cb = this.pendingCb;
    this.pending = undefined;
    this.pendingCb = undefined;
    cb?.(new Error("socket closed"));
  }
}

/** Turns a pipe-end socket (see pipe.ts) into a Duplex, with whatever it read before handed over first. */
export function asDuplex(sock: Socket<End>): SocketDuplex {
  const d = new SocketDuplex(sock as Socket<unknown>);
  sock.data.sink = d;
  const early = sock.data.early;
  sock.data.early = [];
  sock.data.earlyBytes = 0;
  for (const chunk of early) d.feed(chunk);
  if (sock.data.readEnded) d.ended();
  if (sock.data.closed) d.gone(sock.data.readEnded || sock.data.writeEnded);
  else sock.resume();
  return d;
}

/** Both directions of a node stream finished (a clean end rather than a cut). */
export function cleanlyDone(sock: { readableEnded: boolean; writableFinished: boolean }): boolean {
  return sock.readableEnded && sock.writableFinished;
}
