// Whatever a peer sends, a channel never throws past `feed`, never holds more than its caps, and what it
// writes back is always well-formed. Property tests over arbitrary bytes and over arbitrary valid frames.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { MuxChannel } from "../../src/data/mux.ts";
import { MAX_MUX_PAYLOAD, MuxDecoder, MuxKind, encodeMux, type MuxFrame } from "../../src/wire/mux-frames.ts";

const LIMITS = { maxStreams: 8, maxBufferedBytes: 512 * 1024, holdMs: 60_000 };

/** A channel whose connection is a recorder (this tests the state machine; the socket tests cover the bytes). */
function recorded(role: "opener" | "acceptor") {
  const out: Buffer[] = [];
  let closedWith: Error | undefined | null = null;
  const mux = new MuxChannel(
    {
      write: (b) => {
        out.push(Buffer.from(b));
        return b.length;
      },
      close() {},
    },
    {
      role,
      limits: LIMITS,
      onHeld: (id) => {
        // Admit every other id at once, as if the control plane's word were already there.
        if (id % 2 === 0) mux.accept(id)?.attach({ data() {}, end() {}, drain() {}, close() {} });
      },
      onClose: (e) => {
        closedWith = e;
      },
    },
  );
  if (role === "opener")
    for (let id = 1; id <= 4; id++) mux.open(id).attach({ data() {}, end() {}, drain() {}, close() {} });
  return { mux, out, closed: () => closedWith };
}

const frameArb: fc.Arbitrary<MuxFrame> = fc.oneof(
  fc.record({
    kind: fc.constant(MuxKind.data),
    id: fc.integer({ min: 1, max: 12 }),
    data: fc.integer({ min: 1, max: MAX_MUX_PAYLOAD }).map((n) => Buffer.alloc(n, 1)),
  }),
  fc.record({
    kind: fc.constant(MuxKind.window),
    id: fc.integer({ min: 1, max: 12 }),
    increment: fc.integer({ min: 1, max: 0x7fffffff }),
  }),
  fc.record({ kind: fc.constant(MuxKind.end), id: fc.integer({ min: 1, max: 12 }) }),
  fc.record({
    kind: fc.constant(MuxKind.reset),
    id: fc.integer({ min: 1, max: 12 }),
    reason: fc.integer({ min: 0, max: 5 }),
  }),
  fc.record({ kind: fc.constant(MuxKind.openAck), id: fc.integer({ min: 1, max: 12 }) }),
) as fc.Arbitrary<MuxFrame>;

/** Splits bytes into chunks at the given cut points. */
function chunked(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  return out;
}

const tick = () => new Promise<void>((r) => setImmediate(r));

describe("mux channel under arbitrary input", () => {
  test("arbitrary bytes: never a throw; a broken framing closes the channel with a ProtocolError", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("opener", "acceptor"),
        fc.uint8Array({ maxLength: 4096 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (role, bytes, cuts) => {
          const c = recorded(role as "opener" | "acceptor");
          for (const piece of chunked(Buffer.from(bytes), cuts)) c.mux.feed(piece);
          const why = c.closed();
          if (why !== null) expect(why?.name).toBe("ProtocolError");
          expect(c.mux.streamCount).toBeLessThanOrEqual(LIMITS.maxStreams);
        },
      ),
      { numRuns: 500 },
    );
  });

  test("arbitrary valid frames: caps hold, the channel stays open, and every byte it answers is well-formed", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("opener", "acceptor"),
        fc.array(frameArb, { maxLength: 60 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (role, frames, cuts) => {
          const c = recorded(role as "opener" | "acceptor");
          for (const piece of chunked(Buffer.concat(frames.map(encodeMux)), cuts)) c.mux.feed(piece);
          expect(c.closed()).toBeNull();
          expect(c.mux.streamCount).toBeLessThanOrEqual(LIMITS.maxStreams);
          expect(c.mux.buffered).toBeLessThanOrEqual(LIMITS.maxBufferedBytes);
          await tick();
          const answered = new MuxDecoder().push(Buffer.concat(c.out));
          // Nothing but resets and window grants: this side's owners never wrote, ended or acked.
          for (const f of answered) expect([MuxKind.reset, MuxKind.window] as number[]).toContain(f.kind);
          c.mux.close();
        },
      ),
      { numRuns: 300 },
    );
  });
});
