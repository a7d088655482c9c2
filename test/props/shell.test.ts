// Property tests for the shell room's parsers: the shell protocol's frames (shell/frames.ts), read by the
// host from the guest and by the guest from the host inside the end-to-end TLS: any bytes give frames or a
// ProtocolError; what is encoded decodes unchanged (terminal bytes in chunks, control messages by schema);
// cuts never matter. And recordings (shell/asciicast.ts, replay.ts), files `tessera replay` reads: any file
// plays or fails with a CastError naming the line; what the recorder wrote plays back byte for byte,
// wherever the reader's 64 KiB chunks and the recorder's writes cut a line or a character.
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
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
import { CastError } from "../../src/shell/asciicast.ts";
import { Recorder } from "../../src/shell/recorder.ts";
import { replay } from "../../src/shell/replay.ts";
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

describe("recordings", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-props-cast-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const play = async (file: string) => {
    let out = "";
    const r = await replay(file, { speed: 1, write: (t) => void (out += t), sleep: async () => {} });
    return { ...r, out };
  };
  const header = JSON.stringify({ version: 2, width: 80, height: 24 });
  /** Cast-shaped files: a header or not, events valid or near it, blank lines, any bytes. */
  const castish = fc
    .array(
      fc.oneof(
        fc.constant(header),
        fc
          .tuple(fc.double({ min: -1, max: 1e6, noNaN: true }), fc.constantFrom("o", "r", "i", "oo", ""), fc.string())
          .map((e) => JSON.stringify(e)),
        fc.constantFrom(
          "",
          "[]",
          "[1]",
          '[1,"r","80x"]',
          '[1,"r","80x24"]',
          "{",
          "null",
          '{"version":2,"width":0,"height":1}',
        ),
        fc.json(),
        fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b).toString("latin1")),
      ),
      { maxLength: 8 },
    )
    .map((lines) => lines.join("\n"));

  test("(a) any file plays, or stops with a CastError that names what is wrong", async () => {
    await fc.assert(
      fc.asyncProperty(castish, async (text) => {
        const file = path.join(dir, `a${n++}.cast`);
        fs.writeFileSync(file, text);
        try {
          await play(file);
        } catch (err) {
          if (!(err instanceof CastError)) throw new Error(`threw ${String(err)}, not a CastError`);
        }
      }),
      { numRuns: 150 },
    );
  });

  test("(b, c) what the recorder wrote, in any cuts of its output, plays back as the same text", async () => {
    // Long runs of multi-byte characters put the reader's 64 KiB boundaries inside lines and characters.
    const text = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 200 }),
      fc
        .tuple(fc.constantFrom("é", "€", "😀", "a"), fc.integer({ min: 10_000, max: 40_000 }))
        .map(([c, k]) => c.repeat(k)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(text, { minLength: 1, maxLength: 3 }), cuts, async (texts, points) => {
        const id = `b${n++}`;
        const rec = Recorder.open(dir, { sessionId: id, cols: 80, rows: 24, title: "t", env: {} });
        const bytes = Buffer.from(texts.join(""));
        for (const c of splitAt(bytes, points)) rec.output(c);
        rec.close();
        const r = await play(rec.file);
        expect(r.out).toBe(texts.join(""));
        expect(r.header.width).toBe(80);
      }),
      { numRuns: 30 },
    );
  });
});
