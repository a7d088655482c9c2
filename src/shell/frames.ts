// The shell protocol, spoken inside the end-to-end TLS stream between guest and agent: every frame
// defined once here. Terminal bytes travel raw; the few control messages are JSON checked by schema.
import * as v from "valibot";
import { ProtocolError } from "../errors.ts";
import { decodeJson } from "../validate.ts";
import { LengthPrefixed, withLengthPrefix, type Framing } from "../wire/length-prefix.ts";

export const SHELL_PROTOCOL_VERSION = 1;
/** Hard cap on one frame's payload, checked before it is buffered. */
export const MAX_SHELL_FRAME = 64 * 1024;
/** Terminal bytes are cut into chunks of at most this size so a frame never nears the cap. */
export const DATA_CHUNK = 16 * 1024;
const HEADER = 5; // 1 byte kind + u32 big-endian payload length
const KIND_DATA = 0;
const KIND_CONTROL = 1;

const dim = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1000));
const frame = <T extends string, E extends v.ObjectEntries>(t: T, entries: E) =>
  v.strictObject({ t: v.literal(t), ...entries });

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

const SHELL: Framing = {
  header: HEADER,
  max: MAX_SHELL_FRAME,
  what: "shell frame",
  check: (h) => {
    const kind = h.readUInt8(0);
    if (kind !== KIND_DATA && kind !== KIND_CONTROL)
      throw new ProtocolError(`unknown shell frame kind ${kind}`, "bad_frame");
  },
};

function withHeader(kind: number, body: Uint8Array): Buffer {
  return withLengthPrefix(SHELL, Uint8Array.of(kind), body);
}

/** Incremental decoder for one direction; once it has thrown it keeps throwing, since framing is lost. */
export class ShellDecoder<C extends { t: string }> {
  private readonly frames: LengthPrefixed<ShellFrame<C>>;

  constructor(schema: v.GenericSchema<unknown, C>) {
    const bad = (m: string) => new ProtocolError(m, "bad_frame");
    this.frames = new LengthPrefixed(SHELL, (h, body) =>
      h.readUInt8(0) === KIND_DATA
        ? { t: "data", data: Buffer.from(body) }
        : decodeJson(schema, body.toString("utf8"), "shell control frame", bad),
    );
  }

  push(chunk: Uint8Array): ShellFrame<C>[] {
    return this.frames.push(chunk);
  }
}
