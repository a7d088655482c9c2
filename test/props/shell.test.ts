// Property tests for the shell protocol's frames (shell/frames.ts), read by the host from the guest and
// by the guest from the host inside the end-to-end TLS: any bytes give frames or a ProtocolError; what is
// encoded decodes unchanged (terminal bytes in chunks, control messages by schema); cuts never matter.
import { describe, expect, test } from "bun:test";
import type * as v from "valibot";
import { ProtocolError } from "../../src/errors.ts";
import {
  DATA_CHUNK,
  encodeControl,
  encodeData,
  GuestControl,
  HostControl,
  MAX_SHELL_FRAME,
  ShellDecoder,
  type ShellFrame,
} from "../../src/shell/frames.ts";
import { arbitraryOf, cuts, fc, feed, splitAt, typedOrValue, variantOptions } from "./fc.ts";

const sides = [
  { name: "GuestControl", schema: GuestControl as v.GenericSchema<unknown, { t: string }> },
  { name: "HostControl", schema: HostControl as v.GenericSchema<unknown, { t: string }> },
];
const withHeader = (kind: number, body: Uint8Array) => {
  const h = Buffer.alloc(5);
  h[0] = kind;
  h.writeUInt32BE(body.length, 1);
  return Buffer.concat([h, body]);
};
/** Shell streams: data and control frames, near misses (a wrong kind, JSON not of the schema), any bytes. */
const streamOf = (schema: v.GenericSchema) =>
  fc.array(
    fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.concat(encodeData(b))),
      arbitraryOf(schema).map((m) => encodeControl(m as never)),
      fc.tuple(fc.integer({ min: 0, max: 3 }), fc.json()).map(([k, j]) => withHeader(k, Buffer.from(j))),
      fc.uint8Array({ maxLength: 12 }),
    ),
    { maxLength: 6 },
  );

describe("shell frames", () => {
  for (const { name, schema } of sides) {
    test(`(a) ${name}: any bytes give frames or a ProtocolError that sticks; nothing past a frame is held`, () => {
      fc.assert(
        fc.property(streamOf(schema), cuts, (parts, points) => {
          const d = new ShellDecoder(schema);
          for (const c of splitAt(Buffer.concat(parts), points)) {
            const r = typedOrValue(() => d.push(c), ProtocolError);
            if (r instanceof Error) return void expect(() => d.push(encodeData(Buffer.from("x"))[0]!)).toThrow(r);
            for (const f of r as ShellFrame<{ t: string }>[])
              if (f.t === "data") expect((f as { data: Buffer }).data.length).toBeLessThanOrEqual(MAX_SHELL_FRAME);
          }
        }),
        { numRuns: 150 },
      );
    });

    test(`(b) ${name}: every control message survives encode then decode`, () => {
      for (const o of variantOptions(schema)) {
        fc.assert(
          fc.property(arbitraryOf(o.schema), (m) => {
            expect(new ShellDecoder(schema).push(encodeControl(m as never))).toEqual([m as ShellFrame<{ t: string }>]);
          }),
          { numRuns: 40 },
        );
      }
    });

    test(`(c) ${name}: cut anywhere or byte by byte, the same frames and the same end as fed whole`, () => {
      fc.assert(
        fc.property(streamOf(schema), cuts, (parts, points) => {
          const bytes = Buffer.concat(parts);
          const whole = feed((c) => new ShellDecoder(schema).push(c), [bytes]);
          const d1 = new ShellDecoder(schema);
          expect(feed((c) => d1.push(c), splitAt(bytes, points))).toEqual(whole);
          const d2 = new ShellDecoder(schema);
          expect(
            feed(
              (c) => d2.push(c),
              [...bytes].map((b) => Uint8Array.of(b)),
            ),
          ).toEqual(whole);
        }),
        { numRuns: 60 },
      );
    });
  }

  test("(b) terminal bytes of any length come back whole, in chunks of at most DATA_CHUNK", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3 * DATA_CHUNK + 7 }), fc.nat(255), (n, fill) => {
        const data = Buffer.alloc(n, fill);
        const frames = encodeData(data);
        expect(frames.length).toBe(Math.ceil(n / DATA_CHUNK));
        const got = new ShellDecoder(GuestControl).push(Buffer.concat(frames)) as { t: "data"; data: Buffer }[];
        for (const f of got) expect(f.data.length).toBeLessThanOrEqual(DATA_CHUNK);
        expect(Buffer.concat(got.map((f) => f.data))).toEqual(data);
      }),
      { numRuns: 30 },
    );
  });
});
