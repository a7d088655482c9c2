// The data channel's frames: a session's streams multiplexed inside one end-to-end TLS channel, defined
// once here beside the control frames. Binary, not JSON: a data frame is a 9-byte header and the bytes,
// so the hot path never parses text. Every frame names its stream; the shapes follow SSH channels and
// HTTP/2 (per-stream windows granted by the receiver, half-close, reset).
import { ProtocolError } from "../errors.ts";

/** Bumped when a frame's layout changes; the control plane's PROTOCOL_VERSION names the whole set. */
export const MUX_VERSION = 1;
/** kind (u8), stream id (u32 BE, never 0), body length (u32 BE). */
export const MUX_HEADER = 9;
/** Largest data frame body: big enough that bulk costs few headers, small enough to interleave streams. */
export const MAX_MUX_PAYLOAD = 64 * 1024;
/**
 * Bytes each side may send on a new stream before the receiver grants more: OpenSSH's channel window. On
 * loopback one bulk stream moved 545-640 MB/s at 1 MiB, ~690 at 2 MiB and ~740 at 4 MiB (quick benches),
 * while the channel's cap on unconsumed bytes (64 MiB) then admits 32 stalled streams at full window.
 */
export const INITIAL_WINDOW = 2048 * 1024;
/** A window never grows past this (HTTP/2's 2^31-1): a larger grant is the peer's error. */
export const MAX_WINDOW = 0x7fffffff;

export const MuxKind = {
  /** Stream bytes; counts against the receiver's window for the stream. */
  data: 0,
  /** The receiver consumed bytes: body u32, the sender may send that many more. */
  window: 1,
  /** The sender's half-close: no more data on this stream from it (TCP FIN). */
  end: 2,
  /** The stream is gone in both directions; body u8, a MuxReset reason. No frame for it follows. */
  reset: 3,
  /** The accepting side reached the stream's target: bytes flow both ways from here. */
  openAck: 4,
} as const;
export type MuxKind = (typeof MuxKind)[keyof typeof MuxKind];

/** Why a stream was reset, carried in one byte so the other side can say it. */
export const MuxReset = {
  /** The opener let go (its local connection closed abruptly). */
  cancel: 0,
  /** The accepting side refused the stream (not opened on the control plane, or refused there). */
  refused: 1,
  /** The target could not be reached or broke off. */
  target: 2,
  /** A cap was reached (streams or buffered bytes per session). */
  limit: 3,
  /** The peer broke the stream's rules (data past its window or after its half-close). */
  protocol: 4,
  /** Revoke, a scope's end, or the session's end cut it. */
  cut: 5,
} as const;
export type MuxReset = (typeof MuxReset)[keyof typeof MuxReset];
const RESET_NAMES = Object.fromEntries(Object.entries(MuxReset).map(([k, n]) => [n, k])) as Record<number, string>;

export function resetName(reason: number): string {
  return RESET_NAMES[reason] ?? `reason ${reason}`;
}

export type MuxFrame =
  | { kind: typeof MuxKind.data; id: number; data: Buffer }
  | { kind: typeof MuxKind.window; id: number; increment: number }
  | { kind: typeof MuxKind.end; id: number }
  | { kind: typeof MuxKind.reset; id: number; reason: MuxReset }
  | { kind: typeof MuxKind.openAck; id: number };

/** A frame other than data, ready to send: header and its small fixed body. */
export function muxControlFrame(kind: number, id: number, body?: Uint8Array): Buffer {
  const h = header(kind as MuxKind, id, body?.length ?? 0);
  return body?.length ? Buffer.concat([h, body]) : h;
}

function header(kind: MuxKind, id: number, len: number): Buffer {
  const h = Buffer.allocUnsafe(MUX_HEADER);
  h.writeUInt8(kind, 0);
  h.writeUInt32BE(id, 1);
  h.writeUInt32BE(len, 5);
  return h;
}

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 1 || id > 0xffffffff) throw new ProtocolError(`bad stream id ${id}`, "bad_frame");
}

/** A data frame's header; the payload is written after it as is (no copy until the batch is joined). */
export function dataHeader(id: number, len: number): Buffer {
  checkId(id);
  if (len < 1 || len > MAX_MUX_PAYLOAD)
    throw new ProtocolError(`data frame of ${len} bytes outside 1-${MAX_MUX_PAYLOAD}`, "frame_too_large");
  return header(MuxKind.data, id, len);
}

/** Any frame but data as one buffer; data frames are encoded whole here too (tests, small writes). */
export function encodeMux(f: MuxFrame): Buffer {
  checkId(f.id);
  switch (f.kind) {
    case MuxKind.data:
      return Buffer.concat([dataHeader(f.id, f.data.length), f.data]);
    case MuxKind.window: {
      if (!Number.isInteger(f.increment) || f.increment < 1 || f.increment > MAX_WINDOW)
        throw new ProtocolError(`window increment ${f.increment} outside 1-${MAX_WINDOW}`, "bad_frame");
      const b = header(f.kind, f.id, 4);
      return Buffer.concat([b, u32(f.increment)]);
    }
    case MuxKind.reset:
      return Buffer.concat([header(f.kind, f.id, 1), Uint8Array.of(f.reason)]);
    case MuxKind.end:
    case MuxKind.openAck:
      return header(f.kind, f.id, 0);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** Body length each kind allows: data 1..MAX_MUX_PAYLOAD, the others exactly. */
const BODY: Record<number, [number, number]> = {
  [MuxKind.data]: [1, MAX_MUX_PAYLOAD],
  [MuxKind.window]: [4, 4],
  [MuxKind.end]: [0, 0],
  [MuxKind.reset]: [1, 1],
  [MuxKind.openAck]: [0, 0],
};

/**
 * Incremental decoder for one direction of a channel. Everything is checked before a body is
 * buffered (kind, id, length); once it has thrown it keeps throwing, since the framing is lost and the
 * channel must close. Data bodies are views of the received chunks: a data frame that spans reads is
 * handed on in pieces as they come (the stream's bytes and window are the same either way).
 */
export class MuxDecoder {
  private chunks: Buffer[] = [];
  private have = 0;
  private failed: ProtocolError | undefined;
  private pendingHead: { kind: MuxKind; id: number; len: number } | undefined;

  push(chunk: Uint8Array): MuxFrame[] {
    if (this.failed) throw this.failed;
    const out: MuxFrame[] = [];
    if (chunk.length) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.have += chunk.length;
    }
    try {
      for (;;) {
        if (!this.pendingHead) {
          if (this.have < MUX_HEADER) break;
          this.pendingHead = parseHeader(this.take(MUX_HEADER));
        }
        const h = this.pendingHead;
        if (h.kind === MuxKind.data && this.have > 0 && this.have < h.len) {
          // What has come of a data frame goes on as it comes (every chunk buffered is this frame's):
          // reassembling a 64 KiB frame from the TLS socket's smaller reads would copy every byte once more.
          for (const c of this.chunks) out.push({ kind: MuxKind.data, id: h.id, data: c });
          h.len -= this.have;
          this.chunks = [];
          this.have = 0;
          break;
        }
        if (this.have < h.len) break;
        this.pendingHead = undefined;
        out.push(toFrame(h, this.take(h.len)));
      }
    } catch (err) {
      this.failed = err instanceof ProtocolError ? err : new ProtocolError(String(err), "bad_frame");
      throw this.failed;
    }
    return out;
  }

  /** Bytes buffered and not yet a whole frame (a bound the channel checks stays small). */
  get buffered(): number {
    return this.have;
  }

  /** The next n bytes: a view when they lie in the first chunk, else one copy. */
  private take(n: number): Buffer {
    this.have -= n;
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - at);
      c.copy(out, at, 0, k);
      at += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

function parseHeader(h: Buffer): { kind: MuxKind; id: number; len: number } {
  const kind = h.readUInt8(0);
  const id = h.readUInt32BE(1);
  const len = h.readUInt32BE(5);
  const allowed = BODY[kind];
  if (!allowed) throw new ProtocolError(`unknown channel frame kind ${kind}`, "bad_frame");
  if (id === 0) throw new ProtocolError("channel frame for stream 0", "bad_frame");
  if (len < allowed[0] || len > allowed[1])
    throw new ProtocolError(
      `channel frame kind ${kind} with a ${len}-byte body (allowed ${allowed[0]}-${allowed[1]})`,
      len > MAX_MUX_PAYLOAD ? "frame_too_large" : "bad_frame",
    );
  return { kind: kind as MuxKind, id, len };
}

function toFrame(h: { kind: MuxKind; id: number }, body: Buffer): MuxFrame {
  switch (h.kind) {
    case MuxKind.data:
      return { kind: h.kind, id: h.id, data: body };
    case MuxKind.window: {
      const increment = body.readUInt32BE(0);
      if (increment < 1 || increment > MAX_WINDOW)
        throw new ProtocolError(`window increment ${increment} outside 1-${MAX_WINDOW}`, "bad_frame");
      return { kind: h.kind, id: h.id, increment };
    }
    case MuxKind.reset: {
      const reason = body.readUInt8(0);
      if (!(reason in RESET_NAMES)) throw new ProtocolError(`unknown reset reason ${reason}`, "bad_frame");
      return { kind: h.kind, id: h.id, reason: reason as MuxReset };
    }
    case MuxKind.end:
    case MuxKind.openAck:
      return { kind: h.kind, id: h.id };
  }
}
