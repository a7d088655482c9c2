// Length-prefixed framing, shared by control frames (u32 length, then JSON) and shell frames (1 byte
// kind, u32 length): a frame's length is checked before a byte of its body is buffered, and once the
// framing is lost every later push throws the same error (a stream out of step is never trusted again).
import { ProtocolError } from "../errors.ts";

export interface Framing {
  /** Bytes before the body; the body's u32 big-endian length ends the header. */
  header: number;
  max: number;
  /** Names the frames in errors ("frame", "shell frame"). */
  what: string;
  /** Refuses a header before its body is awaited (an unknown kind byte, say). */
  check?(header: Buffer): void;
}

/** Splits a byte stream into frames and turns each into a T with `decode` (body is a view: copy what you keep). */
export class LengthPrefixed<T> {
  private buf: Buffer = Buffer.alloc(0);
  private failed: ProtocolError | undefined;

  constructor(
    private readonly f: Framing,
    private readonly decode: (header: Buffer, body: Buffer) => T,
  ) {}

  /** The frames this chunk completes; a decode failure breaks the stream like a framing one. */
  push(chunk: Uint8Array): T[] {
    if (this.failed) throw this.failed;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    const out: T[] = [];
    try {
      const h = this.f.header;
      while (this.buf.length >= h) {
        const header = this.buf.subarray(0, h);
        this.f.check?.(header);
        const len = header.readUInt32BE(h - 4);
        if (len > this.f.max)
          throw new ProtocolError(
            `${this.f.what} of ${len} bytes exceeds the ${this.f.max}-byte limit`,
            "frame_too_large",
          );
        if (this.buf.length < h + len) break;
        const body = this.buf.subarray(h, h + len);
        this.buf = this.buf.subarray(h + len);
        out.push(this.decode(header, body));
      }
    } catch (err) {
      this.failed = err instanceof ProtocolError ? err : new ProtocolError(String(err), "bad_frame");
      // Frames this chunk completed before the bad bytes still count, as they would have had the bytes
      // come in two reads: where the network cut the stream must not decide which frames are acted on.
      if (out.length) throw new FramingError(this.failed, out);
      throw this.failed;
    }
    return out;
  }

  /** Bytes received after the last whole frame (for handing a connection over to raw bytes). */
  rest(): Buffer {
    return this.buf;
  }
}

/**
 * The stream broke after some whole frames in the same chunk: `before` holds them, in order, for the
 * caller to handle first; then the stream is failed as `code` and `message` say. Later pushes throw the
 * plain error, without the frames.
 */
export class FramingError<T = unknown> extends ProtocolError {
  override name = "FramingError";
  constructor(
    cause: ProtocolError,
    readonly before: T[],
  ) {
    super(cause.message, cause.code);
  }
}

/** The frames a failed push still completed (see FramingError), or none. */
export function framesBefore<T>(err: unknown): T[] {
  return err instanceof FramingError ? (err.before as T[]) : [];
}

/** Header plus body, refusing a body over the limit before anything is sent. */
export function withLengthPrefix(f: Framing, head: Uint8Array, body: Uint8Array): Buffer {
  if (body.length > f.max)
    throw new ProtocolError(`${f.what} of ${body.length} bytes exceeds the ${f.max}-byte limit`, "frame_too_large");
  const out = Buffer.allocUnsafe(f.header + body.length);
  out.set(head, 0);
  out.writeUInt32BE(body.length, f.header - 4);
  out.set(body, f.header);
  return out;
}
