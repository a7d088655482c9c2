// Unit tests for src/shell/frames.ts (the terminal protocol inside the end-to-end stream) and the shell target.
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { ProtocolError } from "../src/errors.ts";
import { ClientFrame, SHELL_TARGET } from "../src/wire/protocol.ts";
import { parseTarget } from "../src/wire/address.ts";
import {
  DATA_CHUNK,
  encodeControl,
  encodeData,
  GuestControl,
  HostControl,
  MAX_SHELL_FRAME,
  ShellDecoder,
  type ShellFrame,
} from "../src/shell/frames.ts";

const guestExamples: GuestControl[] = [
  { t: "hello", v: 1, cols: 120, rows: 40, term: "xterm-256color", tty: true },
  { t: "resize", cols: 1, rows: 1000 },
  { t: "eof" },
];
const hostExamples: HostControl[] = [
  { t: "ready", v: 1, readOnly: true, recorded: false },
  { t: "exit", code: 3, signal: null },
  { t: "exit", code: null, signal: "SIGHUP" },
];

function header(kind: number, len: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt8(kind, 0);
  b.writeUInt32BE(len, 1);
  return b;
}

describe("shell frames", () => {
  test("control frames and raw bytes round-trip, fed one byte at a time", () => {
    const bytes = Buffer.from([0, 1, 2, 3, 0x1b, 0x5b, 0x41, 0xff, 0x03, 0x04]);
    const stream = Buffer.concat([
      ...guestExamples.map(encodeControl),
      ...encodeData(bytes),
      encodeControl({ t: "eof" }),
    ]);
    const dec = new ShellDecoder(GuestControl);
    const got: ShellFrame<GuestControl>[] = [];
    for (let i = 0; i < stream.length; i++) got.push(...dec.push(stream.subarray(i, i + 1)));
    expect(got).toEqual([...guestExamples, { t: "data", data: bytes }, { t: "eof" }]);
    const hostDec = new ShellDecoder(HostControl);
    expect(hostDec.push(Buffer.concat(hostExamples.map(encodeControl)))).toEqual(hostExamples);
  });

  test("large output is cut into chunks that each fit a frame and join back byte-exact", () => {
    const big = Buffer.alloc(DATA_CHUNK * 3 + 17, 7).map((_, i) => i % 251);
    const frames = encodeData(big);
    expect(frames.length).toBe(4);
    const got = new ShellDecoder(HostControl).push(Buffer.concat(frames));
    expect(Buffer.concat(got.map((f) => (f as { data: Buffer }).data)).equals(big)).toBe(true);
    expect(encodeData(new Uint8Array(0))).toEqual([]);
  });

  test("an oversized frame is refused from its header, before its body is buffered", () => {
    const dec = new ShellDecoder(GuestControl);
    expect(() => dec.push(header(0, MAX_SHELL_FRAME + 1))).toThrow(/exceeds the 65536-byte limit/);
    // Once broken, always broken: framing is lost for good.
    expect(() => dec.push(encodeControl({ t: "eof" }))).toThrow(ProtocolError);
  });

  test("unknown kinds, bad JSON and frames of the wrong direction or shape are refused", () => {
    expect(() => new ShellDecoder(GuestControl).push(header(9, 0))).toThrow(/unknown shell frame kind 9/);
    expect(() => new ShellDecoder(GuestControl).push(Buffer.concat([header(1, 3), Buffer.from("{x}")]))).toThrow(
      /not valid JSON/,
    );
    // A host's message is not something a guest may send, and the other way round.
    expect(() => new ShellDecoder(GuestControl).push(encodeControl({ t: "exit", code: 0, signal: null }))).toThrow(
      ProtocolError,
    );
    expect(() => new ShellDecoder(HostControl).push(encodeControl({ t: "eof" }))).toThrow(ProtocolError);
    const bad = (msg: object) => () => new ShellDecoder(GuestControl).push(encodeControl(msg as GuestControl));
    expect(bad({ t: "resize", cols: 0, rows: 24 })).toThrow(/at cols/);
    expect(bad({ t: "resize", cols: 80.5, rows: 24 })).toThrow(/at cols/);
    expect(bad({ t: "resize", cols: 80, rows: 100_000 })).toThrow(/at rows/);
    expect(bad({ t: "hello", v: 1, cols: 80, rows: 24, term: "xterm; rm -rf /", tty: true })).toThrow(/at term/);
    expect(bad({ t: "eof", extra: 1 })).toThrow(ProtocolError);
    expect(() =>
      encodeControl({
        t: "ready",
        v: 1,
        readOnly: false,
        recorded: false,
        pad: "x".repeat(MAX_SHELL_FRAME),
      } as HostControl),
    ).toThrow(/exceeds/);
  });
});

describe("the shell target", () => {
  test("frames accept the literal shell beside HOST:PORT, and nothing like it", () => {
    expect(v.safeParse(ClientFrame, { t: "mint", shareId: "s", target: SHELL_TARGET }).success).toBe(true);
    // ("shell:22" is an ordinary host called shell.)
    for (const t of ["Shell", "shellx", "/bin/sh", "shell\n"]) {
      expect(v.safeParse(ClientFrame, { t: "mint", shareId: "s", target: t }).success).toBe(false);
    }
    // It is not a network address: anything that would dial it refuses.
    expect(() => parseTarget(SHELL_TARGET)).toThrow(/not HOST:PORT/);
  });
});
