// The data channel's outgoing side: frames queued by any stream during one event-loop turn leave in one
// write (what ssh does with its channels and what per-stream connections could not), and nothing more is
// written while the connection's kernel buffer is full.
import type { MuxTransport } from "./mux.ts";

export class Outbox {
  private frames: Buffer[] = [];
  private bytes = 0;
  /** Bytes the connection did not take yet; nothing else is written until they drain. */
  private pending: Buffer | undefined;
  private scheduled = false;
  private stopped = false;

  constructor(
    private readonly transport: MuxTransport,
    /** The connection refused a write: it is gone. */
    private readonly gone: () => void,
    /** Everything queued has left (the connection took it): writers that paused may go on. */
    private readonly emptied: () => void,
  ) {}

  /** Bytes queued or waiting for the connection. */
  get size(): number {
    return this.bytes + (this.pending?.length ?? 0);
  }

  queue(frame: Buffer, payload?: Buffer): void {
    if (this.stopped) return;
    this.frames.push(frame);
    this.bytes += frame.length;
    if (payload) {
      this.frames.push(payload);
      this.bytes += payload.length;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    // One write per event-loop turn: every stream that queued in this turn shares it.
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  /** The connection can take more bytes. */
  drained(): void {
    if (this.stopped || !this.pending) return;
    const p = this.pending;
    this.pending = undefined;
    if (this.write(p)) this.flush();
  }

  /** Writes what is queued now (also used to say goodbye before a clean close). */
  flush(): void {
    if (this.stopped || this.pending) return;
    if (this.frames.length) {
      const batch = this.frames.length === 1 ? this.frames[0]! : Buffer.concat(this.frames, this.bytes);
      this.frames = [];
      this.bytes = 0;
      if (!this.write(batch)) return;
    }
    this.emptied();
  }

  /** Drops everything: the channel is over. */
  stop(): void {
    this.stopped = true;
    this.frames = [];
    this.bytes = 0;
    this.pending = undefined;
  }

  private write(b: Buffer): boolean {
    const n = this.transport.write(b);
    if (n < 0) {
      this.gone();
      return false;
    }
    if (n < b.length) {
      this.pending = b.subarray(n);
      return false;
    }
    return true;
  }
}
