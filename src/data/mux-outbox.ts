// The data channel's outgoing side: frames queued by any stream during one event-loop turn leave in one
// write (what ssh does with its channels and what per-stream connections could not), and nothing more is
// written while the connection's kernel buffer is full.
import type { MuxTransport } from "./mux.ts";

/** The reused join buffer's usual size, and the largest kept for reuse (a rare huge batch is not held). */
const SPARE = 256 * 1024;
const MAX_SPARE = 2 << 20;
/** Queued after this long without a write: written at the end of the callback, not the loop's turn. */
const IDLE_MS = 0.5;
/** A payload this large alone in a turn is written as it is, not copied into a batch. */
const BIG = 16 * 1024;

export class Outbox {
  private frames: Buffer[] = [];
  private bytes = 0;
  /** Bytes the connection did not take yet; nothing else is written until they drain. */
  private pending: Buffer | undefined;
  private scheduled = false;
  private stopped = false;
  /**
   * The buffer batches are joined in, reused: a fresh one per write cost page faults that showed as a
   * quarter of the agent's CPU on bulk (profiled, Bun 1.4.4). While `pending` is a view of it, it is not
   * reused; once the connection took every byte of a write, it is free again.
   */
  private spare: Buffer | undefined;
  private pendingBase: Buffer | undefined;
  /** When frames were last queued into an empty outbox (performance.now()). */
  private lastFlush = 0;
  private readonly flushNow = () => {
    this.scheduled = false;
    this.flush();
  };

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
    const now = performance.now();
    const idle = now - this.lastFlush > IDLE_MS;
    this.lastFlush = now;
    // A lone frame after a quiet spell (one request, one answer) goes at the end of this callback; under
    // load, one write per event-loop turn: every stream that queued in this turn shares it.
    if (idle) queueMicrotask(this.flushNow);
    else setImmediate(this.flushNow);
  }

  /** The connection can take more bytes. */
  drained(): void {
    if (this.stopped || !this.pending) return;
    const p = this.pending;
    const base = this.pendingBase;
    this.pending = undefined;
    this.pendingBase = undefined;
    if (!this.write(p, base)) return;
    if (base) this.spare = base;
    this.flush();
  }

  /** Writes what is queued now (also used to say goodbye before a clean close). */
  flush(): void {
    if (this.stopped || this.pending) return;
    if (this.frames.length) {
      let batch: Buffer;
      let base: Buffer | undefined;
      if (this.frames.length === 1) batch = this.frames[0]!;
      else if (this.frames.length === 2 && this.frames[1]!.length >= BIG) {
        // One stream's bulk this turn: its header goes first on its own rather than copying the payload.
        const [header, payload] = this.frames as [Buffer, Buffer];
        this.frames = [];
        this.bytes = 0;
        if (!this.write(header)) {
          // The header waits (or the connection is gone): the payload follows it once it drains.
          this.frames = [payload];
          this.bytes = payload.length;
          return;
        }
        if (!this.write(payload)) return;
        return this.emptied();
      } else {
        base =
          this.spare && this.spare.length >= this.bytes ? this.spare : Buffer.allocUnsafe(Math.max(this.bytes, SPARE));
        this.spare = undefined;
        batch = join(this.frames, base);
      }
      this.frames = [];
      this.bytes = 0;
      if (!this.write(batch, base)) return;
      if (base && base.length <= MAX_SPARE) this.spare = base;
    }
    this.emptied();
  }

  /** Drops everything: the channel is over. */
  stop(): void {
    this.stopped = true;
    this.frames = [];
    this.bytes = 0;
    this.pending = undefined;
    this.pendingBase = undefined;
    this.spare = undefined;
  }

  /** `base`: the reused buffer `b` is a view of (kept from reuse while any of it waits). */
  private write(b: Buffer, base?: Buffer): boolean {
    const n = this.transport.write(b);
    if (n < 0) {
      this.gone();
      return false;
    }
    if (n < b.length) {
      this.pending = b.subarray(n);
      this.pendingBase = base;
      return false;
    }
    return true;
  }
}

/** The batch joined into `into` (set, not Buffer.concat: half the cost measured in Bun 1.4.4); a view of it. */
function join(parts: Buffer[], into: Buffer): Buffer {
  let at = 0;
  for (const p of parts) {
    into.set(p, at);
    at += p.length;
  }
  return into.subarray(0, at);
}
