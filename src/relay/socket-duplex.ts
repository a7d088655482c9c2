// A node Duplex over a Bun native socket, for the control plane only: the Channel reads and writes a
// node stream, and control frames are small, so the stream machinery's cost does not matter there.
import { Duplex } from "node:stream";
import type { Socket } from "bun";

export class SocketDuplex extends Duplex {
  private pending: Uint8Array | undefined;
  private pendingCb: ((err?: Error | null) => void) | undefined;

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
