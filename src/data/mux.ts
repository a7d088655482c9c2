// A session's data channel: many streams over one connection (one TLS session), as ssh multiplexes its
// channels. Frames every stream queued during one event-loop turn go out in one write, and one read
// serves every stream it carries. The opener (guest) opens streams by id; the acceptor (agent) holds
// bytes for an id until the control plane's word admits it (`accept`), and resets what is never admitted.
// A peer's bad frame resets its stream, or closes this channel when the framing itself is broken;
// nothing a peer sends can throw past `feed`.
import { ProtocolError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import {
  INITIAL_WINDOW,
  MuxDecoder,
  MuxKind,
  MuxReset,
  dataHeader,
  muxControlFrame,
  type MuxFrame,
} from "../wire/mux-frames.ts";
import { Outbox } from "./mux-outbox.ts";
import { MuxStream, type StreamHost } from "./mux-stream.ts";

const log = logger("data:mux");

/** Where the channel's bytes go: a native socket (TCP or TLS) in practice. */
export interface MuxTransport {
  /** Bytes taken now (possibly fewer than given), or -1 when the connection is gone. */
  write(data: Uint8Array): number;
  /** Ends the connection (the channel is over). */
  close(): void;
}

export interface MuxLimits {
  /** Streams live or held on one channel at once. */
  maxStreams: number;
  /** Received bytes not yet consumed, over every stream of the channel. */
  maxBufferedBytes: number;
  /** Acceptor: how long bytes for an id not yet admitted are held before the stream is reset. */
  holdMs: number;
  /** Each stream's initial window, both directions (both sides must agree). */
  window: number;
  /** Outgoing bytes waiting for the connection past which writers are told to pause. */
  outboxHigh: number;
}

export const DEFAULT_MUX_LIMITS: MuxLimits = {
  maxStreams: 4096,
  maxBufferedBytes: 64 << 20,
  holdMs: 15_000,
  window: INITIAL_WINDOW,
  outboxHigh: 1 << 20,
};

/** Ids closed recently: a late frame for one (crossed with our reset) is dropped, not taken as new. */
const RECENT_CLOSED = 8192;

export interface MuxOptions {
  role: "opener" | "acceptor";
  limits?: Partial<MuxLimits>;
  /** Acceptor: a frame came for an id not admitted yet; it is held until `accept` or the hold time. */
  onHeld?(id: number): void;
  /** A stream left the channel (ended both ways, or reset). */
  onStreamClose?(s: MuxStream): void;
  /** The channel is over: `err` says why when it did not close cleanly. */
  onClose?(err?: Error): void;
}

export class MuxChannel {
  readonly limits: MuxLimits;
  private readonly streams = new Map<number, MuxStream>();
  private readonly holds = new Map<number, ReturnType<typeof setTimeout>>();
  private readonly recent = new Set<number>();
  private readonly decoder = new MuxDecoder();
  private readonly drainWaiters = new Set<MuxStream>();
  private readonly outbox: Outbox;
  private bufferedBytes = 0;
  private over = false;
  private readonly host: StreamHost;

  constructor(
    private readonly transport: MuxTransport,
    private readonly opts: MuxOptions,
  ) {
    this.limits = { ...DEFAULT_MUX_LIMITS, ...opts.limits };
    this.outbox = new Outbox(
      transport,
      () => this.transportClosed(new ProtocolError("the data channel's connection closed", "disconnected")),
      () => this.wakeWriters(),
    );
    this.host = {
      queue: (frame, payload) => this.queue(frame, payload),
      congested: () => this.outbox.size > this.limits.outboxHigh,
      wantDrain: (s) => this.drainWaiters.add(s),
      buffered: (d) => {
        this.bufferedBytes += d;
      },
      closed: (s) => this.forget(s),
      header: muxControlFrame,
      dataHeader,
    };
  }

  get closed(): boolean {
    return this.over;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Received bytes not yet consumed across the channel (for tests and metrics). */
  get buffered(): number {
    return this.bufferedBytes;
  }

  stream(id: number): MuxStream | undefined {
    return this.streams.get(id);
  }

  /** Opener: a new stream with this id (ids are the control plane's; never reused while live). */
  open(id: number): MuxStream {
    if (this.opts.role !== "opener") throw new ProtocolError("only the opener opens streams", "internal");
    if (this.over) throw new ProtocolError("the data channel is closed", "closed");
    if (this.streams.has(id)) throw new ProtocolError(`stream ${id} is already open`, "internal");
    if (this.streams.size >= this.limits.maxStreams)
      throw new ProtocolError(`at most ${this.limits.maxStreams} streams on one channel`, "limit");
    this.recent.delete(id);
    const s = new MuxStream(id, this.host, this.limits.window, true);
    this.streams.set(id, s);
    return s;
  }

  /**
   * Acceptor: the control plane admitted this id. Returns the stream with whatever the opener already
   * sent held in it (delivered once handlers are attached), or undefined when the id was already
   * reset here (held too long, or over a cap), is admitted already, or the channel is gone.
   */
  accept(id: number): MuxStream | undefined {
    if (this.over || this.recent.has(id)) return undefined;
    let s = this.streams.get(id);
    // Admitted already (the id named twice): one id is one stream, and a second word must not rebind it.
    if (s?.admitted) return undefined;
    if (!s) {
      if (this.streams.size >= this.limits.maxStreams) return undefined;
      s = new MuxStream(id, this.host, this.limits.window, true);
      this.streams.set(id, s);
    }
    this.unhold(id);
    s.admitted = true;
    return s;
  }

  /** Acceptor: the control plane refused this id; whatever was held is dropped and the opener told. */
  refuse(id: number, reason: MuxReset = MuxReset.refused): void {
    const s = this.streams.get(id);
    if (s) return s.reset(reason);
    if (this.over || this.recent.has(id)) return;
    this.queue(this.host.header(MuxKind.reset, id, Buffer.of(reason)));
    this.remember(id);
  }

  /** Bytes read from the connection. */
  feed(chunk: Uint8Array): void {
    if (this.over) return;
    let frames: MuxFrame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      return this.close(err instanceof Error ? err : new Error(String(err)));
    }
    for (const f of frames) {
      if (this.over) return;
      this.onFrame(f);
    }
  }

  /** The connection can take more bytes. */
  drained(): void {
    this.outbox.drained();
  }

  /** Ends the channel and every stream on it (revoke, session end, a broken peer). */
  close(err?: Error): void {
    if (this.over) return;
    // Flush what is queued (resets, ends) so a clean close says goodbye; a broken one drops it.
    if (!err) this.outbox.flush();
    this.over = true;
    if (err) log.debug(`channel closed: ${errorMessage(err)}`);
    this.shutdownStreams();
    this.transport.close();
    this.opts.onClose?.(err);
  }

  /** The connection closed under us (the network, the peer). */
  transportClosed(err?: Error): void {
    if (this.over) return;
    this.over = true;
    this.shutdownStreams();
    this.opts.onClose?.(err ?? new ProtocolError("the data channel's connection closed", "disconnected"));
  }

  private shutdownStreams(): void {
    for (const t of this.holds.values()) clearTimeout(t);
    this.holds.clear();
    // Each stream's close runs its owner's cleanup (and `forget`, which removes it from the map).
    for (const s of [...this.streams.values()]) s.onReset(MuxReset.cut, false);
    this.outbox.stop();
  }

  private onFrame(f: MuxFrame): void {
    let s = this.streams.get(f.id);
    if (!s) {
      if (this.recent.has(f.id)) return; // crossed with our reset or end: late, harmless
      // The opener never hears of ids it did not open: a confused peer's frame is dropped.
      if (this.opts.role === "opener") return;
      // The opener let go of a stream before sending a byte of it: its admission, when it comes, admits nothing.
      if (f.kind === MuxKind.reset) return this.remember(f.id);
      s = this.hold(f.id);
      if (!s) return;
    }
    let bad: MuxReset | undefined;
    switch (f.kind) {
      case MuxKind.data:
        bad = s.onData(f.data);
        if (!bad && this.bufferedBytes > this.limits.maxBufferedBytes) bad = MuxReset.limit;
        break;
      case MuxKind.window:
        bad = s.onWindow(f.increment);
        break;
      case MuxKind.end:
        s.onEnd();
        break;
      case MuxKind.reset:
        s.onReset(f.reason, true);
        break;
      case MuxKind.openAck:
        if (this.opts.role === "opener") s.onAck();
        else bad = MuxReset.protocol;
        break;
    }
    if (bad !== undefined) s.reset(bad);
  }

  /** Acceptor: a stream for an id the control plane has not admitted; held, then reset if never admitted. */
  private hold(id: number): MuxStream | undefined {
    if (this.streams.size >= this.limits.maxStreams) {
      this.refuse(id, MuxReset.limit);
      return undefined;
    }
    const s = new MuxStream(id, this.host, this.limits.window, false);
    this.streams.set(id, s);
    const t = setTimeout(() => {
      this.holds.delete(id);
      if (!s.admitted) s.reset(MuxReset.refused);
    }, this.limits.holdMs);
    t.unref?.();
    this.holds.set(id, t);
    this.opts.onHeld?.(id);
    return s;
  }

  private unhold(id: number): void {
    const t = this.holds.get(id);
    if (t) clearTimeout(t);
    this.holds.delete(id);
  }

  private forget(s: MuxStream): void {
    if (this.streams.get(s.id) === s) this.streams.delete(s.id);
    this.drainWaiters.delete(s);
    this.unhold(s.id);
    this.remember(s.id);
    this.opts.onStreamClose?.(s);
  }

  private remember(id: number): void {
    this.recent.add(id);
    if (this.recent.size > RECENT_CLOSED) this.recent.delete(this.recent.values().next().value!);
  }

  private queue(frame: Buffer, payload?: Buffer): void {
    if (!this.over) this.outbox.queue(frame, payload);
  }

  /** The outbox emptied: streams that paused for it may write again. */
  private wakeWriters(): void {
    if (!this.drainWaiters.size) return;
    const waiting = [...this.drainWaiters];
    this.drainWaiters.clear();
    for (const s of waiting) s.onChannelDrain();
  }
}
