// The data-plane preamble: a data connection (through the relay or direct) opens with the magic and its
// 32-byte stream token in clear, then the end-to-end TLS. One reader for the coordinator's splicer and
// the direct listener, so both refuse the same bytes the same way.
import { ProtocolError } from "../errors.ts";
import { DATA_MAGIC, PREAMBLE_BYTES, STREAM_TOKEN_BYTES } from "./protocol.ts";

/** The preamble for a token: raw bytes, or the base64url text a frame carries. */
export function encodePreamble(token: Uint8Array | string): Buffer {
  const raw = typeof token === "string" ? Buffer.from(token, "base64url") : token;
  if (raw.length !== STREAM_TOKEN_BYTES)
    throw new ProtocolError(`a stream token is ${STREAM_TOKEN_BYTES} bytes, not ${raw.length}`, "bad_token");
  return Buffer.concat([DATA_MAGIC, raw]);
}

/**
 * The token and whatever followed it, or undefined while fewer than PREAMBLE_BYTES have come. Throws
 * ProtocolError as soon as the bytes so far cannot start a preamble (the first wrong byte of the magic),
 * so a stranger is cut without waiting for the rest.
 */
export function readPreamble(head: Uint8Array): { token: Buffer; rest: Buffer } | undefined {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const seen = Math.min(b.length, DATA_MAGIC.length);
  if (!b.subarray(0, seen).equals(DATA_MAGIC.subarray(0, seen)))
    throw new ProtocolError("not a tessera data connection (no data preamble)", "bad_frame");
  if (b.length < PREAMBLE_BYTES) return undefined;
  return { token: b.subarray(DATA_MAGIC.length, PREAMBLE_BYTES), rest: b.subarray(PREAMBLE_BYTES) };
}
