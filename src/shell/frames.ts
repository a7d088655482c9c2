// The shell protocol, spoken inside the end-to-end TLS stream between guest and agent: every frame
// defined once here. Terminal bytes travel raw; the few control messages are JSON checked by schema.
import * as v from "valibot";
import { ProtocolError } from "../errors.ts";

export const SHELL_PROTOCOL_VERSION = 1;
/** Hard cap on one frame's payload, checked before it is buffered. */
export const MAX_SHELL_FRAME = 64 * 1024;
/** Terminal bytes are cut into chunks of at most this size so a frame never nears the cap. */
export const DATA_CHUNK = 16 * 1024;
const HEADER = 5; // 1 byte kind + u32 big-endian payload length
const KIND_DATA = 0;
const KIND_CONTROL = 1;

const dim = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1000));
const frame = <T extends string, E extends v.ObjectEntries>(t: T, entries: E) => v.strictObject({ t: v.literal(t), ...entries });

/** Control messages the guest sends: hello first (its window and whether a person is typing), then resizes, then eof. */
export const GuestControl = v.variant("t", [
  frame("hello", {
    v: v.pipe(v.number(), v.integer()),
    cols: dim,
    rows: dim,
    term: v.pipe(v.string(), v.regex(/^[A-Za-z0-9.+_-]{1,64}$/, "must be a terminal name like xterm-256color")),
    tty: v.boolean(),
  }),
  frame("resize", { cols: dim, rows: dim }),
  /** The guest's input ended (piped stdin); the host types the terminal's end-of-file for it. */
  frame("eof", {}),
]);
export type GuestControl = v.InferOutput<typeof GuestControl>;

/** Control messages the host sends: ready (before any output), then exit once the shell is gone. */
export const HostControl = v.variant("t", [
  frame("ready", { v: v.pipe(v.number(), v.integer()), readOnly: v.boolean(), recorded: v.boolean() }),
  frame("exit", {
    code: v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(255))),
    signal: v.nullable(v.pipe(v.string(), v.regex(/^SIG[A-Z0-9]{1,12}$/))),
  }),
]);
export type HostControl = v.InferOutput<typeof HostControl>;

export type ShellFrame<C> = { t: "data"; data: Buffer } | C;

export function encodeData(data: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += DATA_CHUNK) out.push(withHeader(KIND_DATA, data.subarray(i, i + DATA_CHUNK)));
  return out;
}

export function encodeControl(msg: GuestControl | HostControl): Buffer {
  return withHeader(KIND_CONTROL, Buffer.from(JSON.stringify(msg), "utf8"));
}

function withHeader(kind: number, body: Uint8Array): Buffer {
  if (body.length > MAX_SHELL_FRAME) throw new ProtocolError(`shell frame of ${body.length} bytes exceeds the ${MAX_SHELL_FRAME}-byte limit`, "frame_too_large");
  const out = Buffer.allocUnsafe(HEADER + body.length);
  out.writeUInt8(kind, 0);
  out.writeUInt32BE(body.length, 1);
  out.set(body, HEADER);
  return out;
}

/** Incremental decoder for one direction; once it has thrown it keeps throwing, since framing is lost. */
export class ShellDecoder<C extends { t: string }> {
  private buf: Buffer = Buffer.alloc(0);
  private failed: ProtocolError | undefined;

  constructor(private readonly schema: v.GenericSchema<unknown, C>) {}

  push(chunk: Uint8Array): ShellFrame<C>[] {
    if (this.failed) throw this.failed;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    const out: ShellFrame<C>[] = [];
    try {
      while (this.buf.length >= HEADER) {
        const kind = this.buf.readUInt8(0);
        const len = this.buf.readUInt32BE(1);
        if (kind !== KIND_DATA && kind !== KIND_CONTROL) throw new ProtocolError(`unknown shell frame kind ${kind}`, "bad_frame");
        if (len > MAX_SHELL_FRAME) throw new ProtocolError(`shell frame of ${len} bytes exceeds the ${MAX_SHELL_FRAME}-byte limit`, "frame_too_large");
        if (this.buf.length < HEADER + len) break;
        const body = Buffer.from(this.buf.subarray(HEADER, HEADER + len));
        this.buf = this.buf.subarray(HEADER + len);
        out.push(kind === KIND_DATA ? { t: "data", data: body } : this.control(body));
      }
    } catch (err) {
      this.failed = err as ProtocolError;
      throw err;
    }
    return out;
  }

  private control(body: Buffer): C {
    let json: unknown;
    try {
      json = JSON.parse(body.toString("utf8"));
    } catch {
      throw new ProtocolError("shell control frame is not valid JSON", "bad_frame");
    }
    const r = v.safeParse(this.schema, json);
    if (!r.success) {
      const issue = r.issues[0];
      const path = issue.path?.map((p: { key: unknown }) => String(p.key)).join(".") ?? "";
      throw new ProtocolError(`invalid shell control frame${path ? ` at ${path}` : ""}: ${issue.message}`, "bad_frame");
    }
    return r.output;
  }
}
