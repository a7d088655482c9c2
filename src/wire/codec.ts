// The only place control frames are parsed: u32 big-endian length, then UTF-8 JSON, validated by schema.
import type * as v from "valibot";
import { ProtocolError } from "../errors.ts";
import { checked, parseJsonText } from "../validate.ts";
import { LengthPrefixed, withLengthPrefix, type Framing } from "./length-prefix.ts";
import { MAX_FRAME_BYTES } from "./protocol.ts";

const CONTROL: Framing = { header: 4, max: MAX_FRAME_BYTES, what: "frame" };
const NO_HEAD = new Uint8Array(0);

export function encodeFrame(frame: object): Buffer {
  return withLengthPrefix(CONTROL, NO_HEAD, Buffer.from(JSON.stringify(frame), "utf8"));
}

/** Incremental decoder: feed it chunks of any size; it yields validated frames or throws ProtocolError. */
export class FrameDecoder<S extends v.GenericSchema> {
  private readonly frames: LengthPrefixed<v.InferOutput<S>>;

  constructor(schema: S) {
    this.frames = new LengthPrefixed(CONTROL, (_h, body) => decodeBody(schema, body));
  }

  push(chunk: Uint8Array): v.InferOutput<S>[] {
    return this.frames.push(chunk);
  }

  /** Bytes received after the last whole frame (for handing a connection over to raw bytes). */
  rest(): Buffer {
    return this.frames.rest();
  }
}

function decodeBody<S extends v.GenericSchema>(schema: S, body: Buffer): v.InferOutput<S> {
  const bad = (m: string) => new ProtocolError(m, "bad_frame");
  const json = parseJsonText(body.toString("utf8"), "frame", bad);
  const t = typeof json === "object" && json && "t" in json ? String((json as { t: unknown }).t).slice(0, 32) : "?";
  return checked(optionFor(schema, json), json, `"${t}" frame`, bad);
}

/**
 * For a variant schema keyed by a literal, the one option whose literal matches the frame's key, so a
 * frame is checked against its own type only: valibot's variant tries the options in turn and builds an
 * issue (with its message) for every one that misses, which made a late frame type cost ~25 us. The
 * result is the same; a key that matches no option falls back to the whole variant for its message.
 */
function optionFor(schema: v.GenericSchema, json: unknown): v.GenericSchema {
  const tags = tagIndex(schema);
  const key = (schema as { key?: string }).key;
  if (!tags || key === undefined || typeof json !== "object" || json === null) return schema;
  const tag = (json as Record<string, unknown>)[key];
  return (typeof tag === "string" && tags.get(tag)) || schema;
}

const TAGS = new WeakMap<object, Map<string, v.GenericSchema> | null>();

function tagIndex(schema: v.GenericSchema): Map<string, v.GenericSchema> | null {
  let index = TAGS.get(schema);
  if (index !== undefined) return index;
  index = null;
  const s = schema as {
    type?: string;
    key?: string;
    options?: { entries?: Record<string, { type?: string; literal?: unknown }> }[];
  };
  if (s.type === "variant" && s.key && s.options) {
    index = new Map();
    for (const o of s.options) {
      const lit = o.entries?.[s.key];
      if (lit?.type !== "literal" || typeof lit.literal !== "string" || index.has(lit.literal)) {
        index = null;
        break;
      }
      index.set(lit.literal, o as unknown as v.GenericSchema);
    }
  }
  TAGS.set(schema, index);
  return index;
}
