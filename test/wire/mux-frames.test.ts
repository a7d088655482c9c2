// The data channel's frames: every kind round-trips, fed whole and one byte at a time; every bad header
// is refused before its body is buffered, and a broken decoder stays broken.
import { describe, expect, test } from "bun:test";
import {
  MAX_MUX_PAYLOAD,
  MUX_HEADER,
  MuxDecoder,
  MuxKind,
  MuxReset,
  encodeMux,
  type MuxFrame,
} from "../../src/wire/mux-frames.ts";

const FRAMES: MuxFrame[] = [
  { kind: MuxKind.data, id: 1, data: Buffer.from("hello") },
  { kind: MuxKind.data, id: 0xffffffff, data: Buffer.alloc(MAX_MUX_PAYLOAD, 7) },
  { kind: MuxKind.window, id: 2, increment: 131072 },
  { kind: MuxKind.end, id: 3 },
  { kind: MuxKind.reset, id: 4, reason: MuxReset.limit },
  { kind: MuxKind.openAck, id: 5 },
];

const raw = (kind: number, id: number, len: number, body = Buffer.alloc(0)) => {
  const h = Buffer.alloc(MUX_HEADER);
  h.writeUInt8(kind, 0);
  h.writeUInt32BE(id, 1);
  h.writeUInt32BE(len, 5);
  return Buffer.concat([h, body]);
};

/** Adjacent data frames of one stream joined: what a stream reads, however the frames were cut. */
function joinData(frames: MuxFrame[]): MuxFrame[] {
  const out: MuxFrame[] = [];
  for (const f of frames) {
    const last = out.at(-1);
    if (f.kind === MuxKind.data && last?.kind === MuxKind.data && last.id === f.id)
      out[out.length - 1] = { ...last, data: Buffer.concat([last.data, f.data]) };
    else out.push(f);
  }
  return out;
}

describe("mux frames", () => {
  test("every kind round-trips, whole and one byte at a time", () => {
    const bytes = Buffer.concat(FRAMES.map(encodeMux));
    expect(new MuxDecoder().push(bytes)).toEqual(FRAMES);
    const d = new MuxDecoder();
    const out: MuxFrame[] = [];
    for (const b of bytes) out.push(...d.push(Uint8Array.of(b)));
    // A data frame split across reads comes in pieces as they arrive: the same bytes, in order.
    expect(joinData(out)).toEqual(joinData(FRAMES));
    expect(out.filter((f) => f.kind === MuxKind.data).length).toBeGreaterThan(
      FRAMES.filter((f) => f.kind === MuxKind.data).length,
    );
    expect(d.buffered).toBe(0);
  });

  test("a data frame spanning reads is handed on in pieces that are views of the reads, never copied", () => {
    const payload = Buffer.alloc(40_000, 7);
    const bytes = encodeMux({ kind: MuxKind.data, id: 3, data: payload });
    const d = new MuxDecoder();
    const reads = [bytes.subarray(0, 16_009), bytes.subarray(16_009, 32_009), bytes.subarray(32_009)];
    const out = reads.flatMap((r) => d.push(r));
    expect(out.map((f) => (f.kind === MuxKind.data ? f.data.length : -1))).toEqual([16_000, 16_000, 8_000]);
    expect(out.every((f, i) => f.kind === MuxKind.data && f.data.buffer === reads[i]!.buffer)).toBe(true);
    expect(Buffer.concat(out.map((f) => (f.kind === MuxKind.data ? f.data : Buffer.alloc(0)))).equals(payload)).toBe(
      true,
    );
  });

  test("bad headers are refused before any body is buffered", () => {
    const cases: [Buffer, RegExp][] = [
      [raw(9, 1, 0), /unknown channel frame kind 9/],
      [raw(MuxKind.data, 0, 1), /stream 0/],
      [raw(MuxKind.data, 1, MAX_MUX_PAYLOAD + 1), /body/],
      [raw(MuxKind.data, 1, 0), /body/],
      [raw(MuxKind.end, 1, 1), /body/],
      [raw(MuxKind.window, 1, 4, Buffer.alloc(4)), /increment 0/],
      [raw(MuxKind.reset, 1, 1, Buffer.of(200)), /unknown reset reason 200/],
    ];
    for (const [bytes, msg] of cases) {
      const d = new MuxDecoder();
      // Only the header: a data frame claiming 4 GiB is refused without waiting for (or holding) its body.
      expect(() => d.push(bytes)).toThrow(msg);
      // Once broken, always broken: the framing is lost.
      expect(() => d.push(encodeMux(FRAMES[0]!))).toThrow(msg);
    }
    expect(() => new MuxDecoder().push(raw(MuxKind.data, 1, 0xffffffff))).toThrow(/body/);
  });

  test("encoding refuses what the decoder would refuse", () => {
    expect(() => encodeMux({ kind: MuxKind.data, id: 0, data: Buffer.from("x") })).toThrow(/stream id/);
    expect(() => encodeMux({ kind: MuxKind.data, id: 1, data: Buffer.alloc(MAX_MUX_PAYLOAD + 1) })).toThrow();
    expect(() => encodeMux({ kind: MuxKind.window, id: 1, increment: 0 })).toThrow(/increment/);
  });
});
