// Property tests for the bytes every peer sends first: the length-prefix framing (wire/length-prefix.ts),
// the control codec on it (wire/codec.ts) and the data preamble (wire/preamble.ts). For each: whatever
// bytes arrive, a value or a ProtocolError (never another throw, never a buffer past the limit); encode
// then decode is the identity; and where the bytes are cut never changes what comes out.
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { ProtocolError } from "../../src/errors.ts";
import { encodeFrame, FrameDecoder } from "../../src/wire/codec.ts";
import { LengthPrefixed, withLengthPrefix, type Framing } from "../../src/wire/length-prefix.ts";
import { encodePreamble, readPreamble } from "../../src/wire/preamble.ts";
import {
  ClientFrame,
  MAX_FRAME_BYTES,
  PREAMBLE_BYTES,
  ServerFrame,
  STREAM_TOKEN_BYTES,
} from "../../src/wire/protocol.ts";
import { arbitraryOf, cuts, fc, feed, outcome, splitAt, typedOrValue, variantOptions } from "./fc.ts";

const concat = (parts: Uint8Array[]) => Buffer.concat(parts);
const oneByOne = (b: Uint8Array) => [...b].map((x) => Uint8Array.of(x));

describe("length-prefix framing", () => {
  // Small limits so the too-large path is met often; one framing with a kind byte and a check, as the shell's.
  const framings: Framing[] = [
    { header: 4, max: 64, what: "frame" },
    {
      header: 5,
      max: 40,
      what: "kinded frame",
      check: (h) => {
        if (h[0]! > 1) throw new ProtocolError(`unknown kind ${h[0]}`, "bad_frame");
      },
    },
  ];
  const framing = fc.constantFrom(...framings);
  const copy = (h: Buffer, body: Buffer) => ({ kind: h.length === 5 ? h[0] : undefined, body: Buffer.from(body) });
  /** Bytes that are mostly well-framed (so the decoder gets deep), sometimes not at all. */
  const stream = (f: Framing) =>
    fc.array(
      fc.oneof(
        fc.uint8Array({ maxLength: f.max }).map((b) => withLengthPrefix(f, Uint8Array.of(0), b)),
        fc.uint8Array({ maxLength: 80 }),
        fc.nat().map((n) => {
          const h = Buffer.alloc(f.header);
          h.writeUInt32BE(n, f.header - 4);
          return h;
        }),
      ),
      { maxLength: 6 },
    );

  test("(a) any bytes: frames or a ProtocolError, the error sticks, and nothing past a frame is buffered", () => {
    fc.assert(
      fc.property(
        framing.chain((f) => fc.tuple(fc.constant(f), stream(f), cuts)),
        ([f, parts, points]) => {
          const d = new LengthPrefixed(f, copy);
          let failed: Error | undefined;
          for (const c of splitAt(concat(parts), points)) {
            const r = typedOrValue(() => d.push(c), ProtocolError);
            if (r instanceof Error) {
              failed = r;
              break;
            }
            // After a push, what waits is at most one frame's header and body, and under the limit.
            expect(d.rest().length).toBeLessThan(f.header + f.max);
            for (const x of r) expect(x.body.length).toBeLessThanOrEqual(f.max);
          }
          if (failed) expect(() => d.push(Uint8Array.of(0))).toThrow(failed);
        },
      ),
    );
  });

  test("(a) a header past the limit is refused at once, before any of its body is awaited", () => {
    fc.assert(
      fc.property(framing, fc.integer({ min: 0, max: 0xffffffff }), (f, n) => {
        fc.pre(n > f.max);
        const h = Buffer.alloc(f.header);
        h.writeUInt32BE(n, f.header - 4);
        const d = new LengthPrefixed(f, copy);
        expect(() => d.push(h)).toThrow(`exceeds the ${f.max}-byte limit`);
      }),
    );
  });

  test("(b) withLengthPrefix then push gives back every body; an oversized body is refused with a ProtocolError", () => {
    fc.assert(
      fc.property(framing, fc.array(fc.uint8Array({ maxLength: 90 }), { maxLength: 6 }), (f, bodies) => {
        const sent = bodies.filter((b) => b.length <= f.max);
        for (const b of bodies.filter((x) => x.length > f.max))
          expect(() => withLengthPrefix(f, Uint8Array.of(1), b)).toThrow(ProtocolError);
        const d = new LengthPrefixed(f, copy);
        const got = d.push(concat(sent.map((b) => withLengthPrefix(f, Uint8Array.of(1), b))));
        expect(got.map((x) => x.body)).toEqual(sent.map((b) => Buffer.from(b)));
        expect(d.rest().length).toBe(0);
      }),
    );
  });

  test("(c) split points never matter: cut anywhere, or byte by byte, equals fed whole", () => {
    fc.assert(
      fc.property(
        framing.chain((f) => fc.tuple(fc.constant(f), stream(f), cuts)),
        ([f, parts, points]) => {
          const bytes = concat(parts);
          const whole = feed((c) => new LengthPrefixed(f, copy).push(c), [bytes]);
          const d1 = new LengthPrefixed(f, copy);
          expect(feed((c) => d1.push(c), splitAt(bytes, points))).toEqual(whole);
          const d2 = new LengthPrefixed(f, copy);
          expect(feed((c) => d2.push(c), oneByOne(bytes))).toEqual(whole);
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe("control codec", () => {
  const schemas = [
    { name: "ClientFrame", schema: ClientFrame as v.GenericSchema },
    { name: "ServerFrame", schema: ServerFrame as v.GenericSchema },
  ];
  const prefix = (body: Uint8Array) => {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(body.length);
    return Buffer.concat([h, body]);
  };
  /** A valid frame with one field dropped, replaced by any JSON, or a key added: near misses reach the schema. */
  const mutated = (schema: v.GenericSchema) =>
    fc.tuple(arbitraryOf(schema), fc.nat(), fc.jsonValue(), fc.boolean()).map(([frame, i, value, drop]) => {
      const o = { ...(frame as Record<string, unknown>) };
      const keys = Object.keys(o);
      const k = keys[i % keys.length]!;
      if (drop && k !== "t") delete o[k];
      else o[i % 3 === 0 ? `x${i}` : k] = value;
      return Buffer.from(JSON.stringify(o));
    });
  /** Frame bodies: valid, nearly valid, any JSON, any bytes; each length-prefixed (sometimes wrongly). */
  const bodies = (schema: v.GenericSchema) =>
    fc.oneof(
      arbitraryOf(schema).map((f) => encodeFrame(f as object)),
      mutated(schema).map(prefix),
      fc.json().map((j) => prefix(Buffer.from(j))),
      fc.uint8Array({ maxLength: 64 }).map(prefix),
      fc.uint8Array({ maxLength: 16 }),
    );

  for (const { name, schema } of schemas) {
    test(`(a) ${name}: any bytes give frames the schema accepts, or a ProtocolError that sticks`, () => {
      fc.assert(
        fc.property(fc.array(bodies(schema), { maxLength: 5 }), cuts, (parts, points) => {
          const d = new FrameDecoder(schema);
          for (const c of splitAt(concat(parts), points)) {
            const r = typedOrValue(() => d.push(c), ProtocolError);
            if (r instanceof Error) {
              expect(["bad_frame", "frame_too_large"]).toContain((r as ProtocolError).code);
              expect(() => d.push(encodeFrame({ t: "ping" }))).toThrow(r);
              return;
            }
            for (const f of r) expect(v.is(schema, f)).toBe(true);
            expect(d.rest().length).toBeLessThan(4 + MAX_FRAME_BYTES);
          }
        }),
        { numRuns: 100 },
      );
    });

    test(`(b) ${name}: every frame type survives encode then decode unchanged`, () => {
      for (const o of variantOptions(schema)) {
        fc.assert(
          fc.property(arbitraryOf(o.schema), (frame) => {
            expect(new FrameDecoder(schema).push(encodeFrame(frame as object))).toEqual([frame]);
          }),
          { numRuns: 25 },
        );
      }
    });

    test(`(c) ${name}: frames cut anywhere, or fed byte by byte, decode as when fed whole`, () => {
      fc.assert(
        fc.property(fc.array(bodies(schema), { maxLength: 4 }), cuts, (parts, points) => {
          const bytes = concat(parts);
          const whole = feed((c) => new FrameDecoder(schema).push(c), [bytes]);
          const d1 = new FrameDecoder(schema);
          expect(feed((c) => d1.push(c), splitAt(bytes, points))).toEqual(whole);
          const d2 = new FrameDecoder(schema);
          expect(feed((c) => d2.push(c), oneByOne(bytes))).toEqual(whole);
        }),
        { numRuns: 40 },
      );
    });
  }

  test("(a) a frame at the limit passes and one byte more is refused before its body", () => {
    const pad = (n: number) => ({ t: "error", code: "x", message: "", pad: "a".repeat(n) });
    const at = Buffer.from(JSON.stringify(pad(0)));
    const body = Buffer.from(JSON.stringify(pad(MAX_FRAME_BYTES - at.length)));
    expect(body.length).toBe(MAX_FRAME_BYTES);
    // The size is the codec's business; the schema then refuses the extra key.
    expect(() => new FrameDecoder(ClientFrame).push(prefix(body))).toThrow('invalid "error" frame');
    const h = Buffer.alloc(4);
    h.writeUInt32BE(MAX_FRAME_BYTES + 1);
    expect(() => new FrameDecoder(ClientFrame).push(h)).toThrow("exceeds the 65536-byte limit");
  });
});

describe("data preamble", () => {
  const token = fc.uint8Array({ minLength: STREAM_TOKEN_BYTES, maxLength: STREAM_TOKEN_BYTES });
  /** Mostly real preambles (whole, cut short, or with a bit flipped), sometimes any bytes at all. */
  const heads = fc.oneof(
    fc.tuple(token, fc.uint8Array({ maxLength: 8 })).map(([t, rest]) => concat([encodePreamble(t), rest])),
    fc.tuple(token, fc.nat(), fc.integer({ min: 0, max: 7 })).map(([t, i, bit]) => {
      const b = Buffer.from(encodePreamble(t));
      b[i % b.length]! ^= 1 << bit;
      return b;
    }),
    fc.tuple(token, fc.nat()).map(([t, n]) => encodePreamble(t).subarray(0, n % PREAMBLE_BYTES)),
    fc.uint8Array({ maxLength: 48 }),
  );

  test("(a) any bytes: a token and the rest, not yet, or a ProtocolError", () => {
    fc.assert(
      fc.property(heads, (head) => {
        const r = typedOrValue(() => readPreamble(head), ProtocolError);
        if (r === undefined) expect(head.length).toBeLessThan(PREAMBLE_BYTES);
        else if (!(r instanceof Error)) {
          expect(r.token.length).toBe(STREAM_TOKEN_BYTES);
          expect(concat([encodePreamble(r.token), r.rest])).toEqual(Buffer.from(head));
        }
      }),
    );
  });

  test("(b) encodePreamble then readPreamble gives the token and what followed; a token of another size is refused", () => {
    fc.assert(
      fc.property(token, fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 64 }), (t, rest, bad) => {
        const r = readPreamble(concat([encodePreamble(t), rest]));
        expect(r).toEqual({ token: Buffer.from(t), rest: Buffer.from(rest) });
        expect(readPreamble(encodePreamble(Buffer.from(t).toString("base64url")))?.token).toEqual(Buffer.from(t));
        if (bad.length !== STREAM_TOKEN_BYTES) expect(() => encodePreamble(bad)).toThrow(ProtocolError);
      }),
    );
  });

  test("(c) read as the bytes come, the first answer is the whole's: never a different token or verdict", () => {
    fc.assert(
      fc.property(heads, cuts, (head, points) => {
        const whole = outcome(() => readPreamble(head));
        let seen = Buffer.alloc(0);
        for (const c of splitAt(head, points)) {
          seen = concat([seen, c]);
          const now = outcome(() => readPreamble(seen));
          if ("ok" in now && now.ok === undefined) continue;
          if ("err" in whole) expect(now).toEqual(whole);
          else expect("ok" in now && now.ok?.token).toEqual((whole.ok as { token: Buffer }).token);
          return;
        }
        expect(whole).toEqual({ ok: undefined });
      }),
    );
  });
});
