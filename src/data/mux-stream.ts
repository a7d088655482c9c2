// One stream inside a data channel: its two windows, its half-closes and its single close path. The
// channel (mux.ts) routes frames to it and carries what it queues; the owner (a socket binding, a
// shell) attaches handlers and tells it when received bytes have left its hands (`consumed`), which is
// what grants the peer more window: a slow reader stalls its own stream and no other.
import { MAX_MUX_PAYLOAD, MAX_WINDOW, MuxKind, MuxReset } from "../wire/mux-frames.ts";

export interface StreamHandlers {
  /** Bytes for the owner; it calls `consumed(n)` once they are gone from its hands (written on, say). */
  data(chunk: Buffer): void;
  /** The peer half-closed: no more data will come. */
  end(): void;
  /** The accepting side reached the target (opener only). */
  ack?(): void;
  /** `write` returned false earlier and the stream can take more now. */
  drain(): void;
  /** The stream is gone; `reset` says why when it did not end cleanly in both directions. */
  close(reset?: { reason: MuxReset; remote: boolean }): void;
}

/** What a stream needs from its channel (kept narrow so the two stay apart). */
export interface StreamHost {
  queue(frame: Buffer, payload?: Buffer): void;
  /** Whether the channel's outgoing buffer is over its mark (a writer should pause). */
  congested(): boolean;
  wantDrain(s: MuxStream): void;
  /** Received bytes left unconsumed changed by `delta` across the channel (the per-session cap). */
  buffered(delta: number): void;
  closed(s: MuxStream): void;
  header(kind: number, id: number, body?: Buffer): Buffer;
  dataHeader(id: number, len: number): Buffer;
}

export class MuxStream {
  bytesIn = 0;
  bytesOut = 0;
  /** Admitted by the accepting side (the coordinator's word came); always true for the opener. */
  admitted: boolean;
  /**
   * Opener: set before a reset that refuses the stream for a reason of the moment (its channel is unknown
   * where the session lives now): nothing reached the target, so its bytes may go again on a new stream.
   */
  retryable = false;
  private h: StreamHandlers | undefined;
  /** Received before handlers were attached (a held stream's first bytes). */
  private inbox: Buffer[] = [];
  private inboxEnded = false;
  private inboxAcked = false;
  private sendWindow: number;
  private recvWindow: number;
  /** Consumed since the last window grant. */
  private unacked = 0;
  /** Delivered or held and not yet consumed (counts toward the channel's cap). */
  private unconsumed = 0;
  private queued: Buffer[] = [];
  private endQueued = false;
  private localEnded = false;
  private remoteEnded = false;
  private done = false;
  private closedWaiters: (() => void)[] = [];

  constructor(
    readonly id: number,
    private readonly host: StreamHost,
    private readonly window: number,
    admitted: boolean,
  ) {
    this.sendWindow = window;
    this.recvWindow = window;
    this.admitted = admitted;
  }

  get closed(): boolean {
    return this.done;
  }

  /** Resolves once the stream is gone (ended both ways, or reset): its byte counts are final then. */
  whenClosed(): Promise<void> {
    if (this.done) return Promise.resolve();
    return new Promise((r) => this.closedWaiters.push(r));
  }

  attach(h: StreamHandlers): void {
    this.h = h;
    if (this.inboxAcked) h.ack?.();
    for (const c of this.inbox.splice(0)) if (!this.done) h.data(c);
    if (this.inboxEnded && !this.done) h.end();
  }

  /** Sends bytes as far as the peer's window allows; false means pause the source until `drain`. */
  write(data: Uint8Array): boolean {
    if (this.done || this.localEnded || this.endQueued) return false;
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
    if (this.queued.length) this.queued.push(buf);
    else {
      const rest = this.send(buf);
      if (rest) this.queued.push(rest);
    }
    if (this.queued.length || this.host.congested()) {
      this.host.wantDrain(this);
      return false;
    }
    return true;
  }

  /** Half-close: after what is queued, the peer sees the end of this direction. */
  end(): void {
    if (this.done || this.localEnded || this.endQueued) return;
    this.endQueued = true;
    this.sendEndIfReady();
  }

  /** Ends the stream both ways at once, dropping what is in flight. */
  reset(reason: MuxReset): void {
    if (this.done) return;
    this.host.queue(this.host.header(MuxKind.reset, this.id, Buffer.of(reason)));
    this.finish({ reason, remote: false });
  }

  /** The accepting side reached the target: tell the opener. */
  ack(): void {
    if (!this.done) this.host.queue(this.host.header(MuxKind.openAck, this.id));
  }

  /** The owner is done with `n` received bytes: the peer may send that many more. */
  consumed(n: number): void {
    if (this.done || n <= 0) return;
    this.unconsumed -= n;
    this.host.buffered(-n);
    if (this.remoteEnded) return;
    this.unacked += n;
    // Grant in halves of the window, as SSH does: one frame per half window, never one per read.
    if (this.unacked >= this.window / 2) {
      const b = Buffer.allocUnsafe(4);
      b.writeUInt32BE(this.unacked, 0);
      this.host.queue(this.host.header(MuxKind.window, this.id, b));
      this.recvWindow += this.unacked;
      this.unacked = 0;
    }
  }

  /** From the channel: the peer's data. Returns a reset reason when the peer broke this stream's rules. */
  onData(data: Buffer): MuxReset | undefined {
    if (this.remoteEnded) return MuxReset.protocol;
    if (data.length > this.recvWindow) return MuxReset.protocol;
    this.recvWindow -= data.length;
    this.bytesIn += data.length;
    this.unconsumed += data.length;
    this.host.buffered(data.length);
    if (this.h) this.h.data(data);
    else this.inbox.push(data);
    return undefined;
  }

  onWindow(increment: number): MuxReset | undefined {
    if (this.sendWindow + increment > MAX_WINDOW) return MuxReset.protocol;
    this.sendWindow += increment;
    this.flushQueued();
    return undefined;
  }

  onEnd(): void {
    if (this.remoteEnded) return;
    this.remoteEnded = true;
    if (this.h) this.h.end();
    else this.inboxEnded = true;
    if (this.localEnded) this.finish();
  }

  onAck(): void {
    if (this.h) this.h.ack?.();
    else this.inboxAcked = true;
  }

  /** The peer reset it, or the channel went: no frame is sent. */
  onReset(reason: MuxReset, remote: boolean): void {
    this.finish({ reason, remote });
  }

  /** The channel's outgoing buffer went below its mark. */
  onChannelDrain(): void {
    if (!this.queued.length && !this.done) this.h?.drain();
  }

  /** Queues frames for as much of `buf` as the window allows; returns what did not fit. */
  private send(buf: Buffer): Buffer | undefined {
    let at = 0;
    while (at < buf.length && this.sendWindow > 0) {
      const n = Math.min(buf.length - at, this.sendWindow, MAX_MUX_PAYLOAD);
      const part = buf.subarray(at, at + n);
      this.host.queue(this.host.dataHeader(this.id, n), part);
      this.sendWindow -= n;
      this.bytesOut += n;
      at += n;
    }
    return at < buf.length ? buf.subarray(at) : undefined;
  }

  private flushQueued(): void {
    while (this.queued.length && this.sendWindow > 0) {
      const rest = this.send(this.queued.shift()!);
      if (rest) this.queued.unshift(rest);
    }
    if (!this.queued.length) {
      this.sendEndIfReady();
      if (!this.host.congested()) this.h?.drain();
      else this.host.wantDrain(this);
    }
  }

  private sendEndIfReady(): void {
    if (!this.endQueued || this.localEnded || this.queued.length || this.done) return;
    this.localEnded = true;
    this.host.queue(this.host.header(MuxKind.end, this.id));
    if (this.remoteEnded) this.finish();
  }

  private finish(reset?: { reason: MuxReset; remote: boolean }): void {
    if (this.done) return;
    this.done = true;
    this.queued = [];
    this.inbox = [];
    this.host.buffered(-this.unconsumed);
    this.unconsumed = 0;
    this.host.closed(this);
    this.h?.close(reset);
    for (const w of this.closedWaiters.splice(0)) w();
  }
}
