// A framed control connection: decodes and validates incoming frames, handles them one at a time,
// and turns a handler's failure into an error frame for that peer alone.
import type { Duplex } from "node:stream";
import type * as v from "valibot";
import { ProtocolError, RefusedError, TesseraError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { encodeFrame, FrameDecoder } from "./codec.ts";
import { framesBefore } from "./length-prefix.ts";
import { watchLiveness, type Beating, type HeartbeatOptions } from "./heartbeat.ts";

const log = logger("channel");

export interface ChannelOptions<In> {
  onFrame: (frame: In) => void | Promise<void>;
  onClose?: (err?: Error) => void;
  /** Close the connection if no frame arrives within this time (a silent peer holds no slot). */
  firstFrameTimeoutMs?: number;
  /** Once a frame's first byte has arrived, close the connection if the rest takes longer than this (a half-sent frame holds its buffer). */
  frameTimeoutMs?: number;
  /** Most frames that may wait behind a slow handler before the peer is cut off. */
  maxQueued?: number;
  /** Ping a quiet peer and end the connection once it has been silent too long (see heartbeat.ts). */
  heartbeat?: HeartbeatOptions;
}

export class Channel<In extends { t: string }, Out extends { t: string }> {
  private readonly decoder: FrameDecoder<v.GenericSchema<unknown, In>>;
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;
  private firstTimer: ReturnType<typeof setTimeout> | undefined;
  private partialTimer: ReturnType<typeof setTimeout> | undefined;
  private closedWith: Error | undefined | null = null;
  private live: Beating | undefined;
  /** The peer's bytes broke the framing after whole frames: those are handled, then the peer is failed. */
  private broken = false;
  private unwatch: (() => void) | undefined;

  constructor(
    readonly socket: Duplex,
    schema: v.GenericSchema<unknown, In>,
    private readonly opts: ChannelOptions<In>,
  ) {
    this.decoder = new FrameDecoder(schema);
    if (opts.firstFrameTimeoutMs) {
      this.firstTimer = setTimeout(
        () => this.fail(new ProtocolError("no frame received in time", "timeout")),
        opts.firstFrameTimeoutMs,
      );
    }
    if (opts.heartbeat) this.beat(opts.heartbeat);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.finish(err));
    socket.on("close", () => this.finish());
    socket.on("end", () => socket.end());
  }

  /** Starts (or retunes) the heartbeat: from now on a quiet peer is pinged, and a silent one is cut. */
  beat(heartbeat: HeartbeatOptions): void {
    if (this.closed) return;
    this.unwatch?.();
    const now = Date.now();
    this.live = {
      heardAt: now,
      pingedAt: now,
      heartbeat,
      ping: () => this.send({ t: "ping" } as Out),
      gone: (err) => this.fail(err),
    };
    this.unwatch = watchLiveness(this.live);
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  send(frame: Out): void {
    if (this.closed || this.socket.destroyed) return;
    this.socket.write(encodeFrame(frame));
  }

  /** Refuse the peer with an error frame and close the connection. */
  fail(err: TesseraError): void {
    if (this.closed) return;
    this.sendError(err);
    this.socket.end();
    this.finish(err);
    // A peer that never reads must not keep the socket open forever.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  close(): void {
    if (this.closed) return;
    this.socket.end();
    this.finish();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  sendError(err: TesseraError, ref?: string): void {
    const frame: Record<string, unknown> = {
      t: "error",
      code: safeCode(err.code),
      message: err.message.slice(0, 1000),
    };
    if (ref) frame.ref = ref;
    this.send(frame as unknown as Out);
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.broken) return;
    if (this.live) this.live.heardAt = Date.now();
    let frames: In[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      const broke = err instanceof TesseraError ? err : new ProtocolError(errorMessage(err));
      frames = framesBefore<In>(err);
      if (!frames.length) return this.fail(broke);
      // Whole frames that came before the bad bytes are handled as if they had come in a read of their
      // own; the peer is failed behind them, and nothing it sends meanwhile is read.
      this.broken = true;
      clearTimeout(this.firstTimer);
      for (const frame of frames) if (!this.enqueue(frame)) return;
      this.queue = this.queue.then(() => this.fail(broke));
      return;
    }
    if (frames.length && this.firstTimer) {
      clearTimeout(this.firstTimer);
      this.firstTimer = undefined;
    }
    this.watchPartial(frames.length > 0);
    for (const frame of frames) if (!this.enqueue(frame)) return;
  }

  /** Queues a frame behind the ones being handled; false (and the peer cut) when too many wait. */
  private enqueue(frame: In): boolean {
    if (++this.queued > (this.opts.maxQueued ?? 64)) {
      this.fail(new ProtocolError("too many frames in flight", "flood"));
      return false;
    }
    this.queue = this.queue.then(() => this.handle(frame));
    return true;
  }

  /** Times the frame now being received: from its first byte, whatever was completed before it. */
  private watchPartial(completed: boolean): void {
    const ms = this.opts.frameTimeoutMs;
    if (!ms) return;
    const partial = this.decoder.rest().length > 0;
    if (this.partialTimer && (completed || !partial)) {
      clearTimeout(this.partialTimer);
      this.partialTimer = undefined;
    }
    if (partial && !this.partialTimer) {
      this.partialTimer = setTimeout(
        () => this.fail(new ProtocolError(`a frame was left half-sent for ${ms / 1000}s`, "timeout")),
        ms,
      );
    }
  }

  private async handle(frame: In): Promise<void> {
    this.queued--;
    if (this.closed) return;
    try {
      await this.opts.onFrame(frame);
    } catch (err) {
      if (err instanceof ProtocolError) this.fail(err);
      else if (err instanceof TesseraError) this.sendError(err, err instanceof RefusedError ? err.ref : undefined);
      else {
        // One frame's failure answers that frame; the connection (and whatever else it carries) goes on.
        log.error(`internal error handling "${frame.t}":`, err);
        const ref = (frame as { ref?: unknown }).ref;
        this.sendError(
          new TesseraError("internal", "internal error; see the coordinator's log"),
          typeof ref === "string" ? ref : undefined,
        );
      }
    }
  }

  private finish(err?: Error): void {
    if (this.closed) return;
    this.closedWith = err;
    this.unwatch?.();
    if (this.firstTimer) clearTimeout(this.firstTimer);
    if (this.partialTimer) clearTimeout(this.partialTimer);
    this.opts.onClose?.(err);
  }
}

function safeCode(code: string): string {
  return /^[A-Za-z0-9_.-]{1,64}$/.test(code) ? code : "error";
}
