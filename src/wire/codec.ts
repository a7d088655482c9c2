// The only place control frames are parsed: u32 big-endian length, then UTF-8 JSON, validated by schema.
import * as v from "valibot";
import { ProtocolError } from "../errors.ts";
import { MAX_FRAME_BYTES } from "./protocol.ts";

export function encodeFrame(frame: object): Buffer {
  const body = Buffer.from(JSON.stringify(frame), "utf8");
  if (body.length > MAX_FRAME_BYTES) throw new ProtocolError(`frame of ${body.length} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit`, "frame_too_large");
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** Incremental decoder: feed it chunks of any size; it yields validated frames or throws ProtocolError. */
export class FrameDecoder<S extends v.GenericSchema> {
  private buf: Buffer = Buffer.alloc(0);
  private failed: ProtocolError | undefined;

  constructor(private readonly schema: S) {}

  push(chunk: Uint8Array): v.InferOutput<S>[] {
    // Once broken, stay broken: a stream that lost framing can never be trusted again.
    if (this.failed) throw this.failed;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    const out: v.InferOutput<S>[] = [];
    try {
      while (this.buf.length >= 4) {
        const len = this.buf.readUInt32BE(0);
        if (len > MAX_FRAME_BYTES) throw new ProtocolError(`frame of ${len} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit`, "frame_too_large");
        if (this.buf.length < 4 + len) break;
        const body = this.buf.subarray(4, 4 + len);
        this.buf = this.buf.subarray(4 + len);
        out.push(decodeBody(this.schema, body));
      }
    } catch (err) {
      this.failed = err as ProtocolError;
      throw err;
    }
    return out;
  }

  /** Bytes received after the last whole frame (for handing a connection over to raw bytes). */
  rest(): Buffer {
    return this.buf;
  }
}

function decodeBody<S extends v.GenericSchema>(schema: S, body: Buffer): v.InferOutput<S> {
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch {
    throw new ProtocolError("frame is not valid JSON", "bad_frame");
  }
  const r = v.safeParse(optionFor(schema, json), json);
  if (!r.success) {
    const issue = r.issues[0];
    const path = issue.path?.map((p: { key: unknown }) => String(p.key)).join(".") ?? "";
    const t = typeof json === "object" && json && "t" in json ? String((json as { t: unknown }).t).slice(0, 32) : "?";
    throw new ProtocolError(`invalid "${t}" frame${path ? ` at ${path}` : ""}: ${issue.message}`, "bad_frame");
  }
  return r.output;
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
  const s = schema as { type?: string; key?: string; options?: { entries?: Record<string, { type?: string; literal?: unknown }> }[] };
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
