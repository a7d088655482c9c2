// The data channel on a real loopback connection: flow control per stream, many streams byte-exact,
// a hostile opener's frames for ids never admitted, caps, and a broken peer closing only its channel.
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { CHANNEL_HANDLERS, socketTransport, type ChannelEnd } from "./mux-connection.ts";
import { MuxChannel, type MuxLimits } from "../../src/data/mux.ts";
import type { MuxStream } from "../../src/data/mux-stream.ts";
import {
  INITIAL_WINDOW,
  MUX_HEADER,
  MuxDecoder,
  MuxKind,
  MuxReset,
  encodeMux,
  type MuxFrame,
} from "../../src/wire/mux-frames.ts";
import { channelPair, collect, type ChannelPair } from "./mux-helpers.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});
async function pair(opts: Parameters<typeof channelPair>[0] = {}): Promise<ChannelPair> {
  const p = await channelPair(opts);
  cleanups.push(() => p.stop());
  return p;
}

/** Deterministic bytes for stream `id` (so a swapped or shifted payload is caught). */
function payload(id: number, len: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let x = id * 2654435761;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Writes all of `data` in 64 KiB pieces, waiting for drain whenever the stream says so. */
function writeAll(s: MuxStream, data: Buffer, onDrain: { fn?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    let at = 0;
    const pump = () => {
      while (at < data.length) {
        const piece = data.subarray(at, at + 65536);
        at += piece.length;
        if (!s.write(piece)) return;
      }
      s.end();
      resolve();
    };
    onDrain.fn = pump;
    pump();
  });
}

describe("mux channel", () => {
  test("a slow reader on one stream stalls only that stream (flow control)", async () => {
    const p = await pair();
    const slowGot: Buffer[] = [];
    let slowBytes = 0;
    const slowFull = Promise.withResolvers<void>();
    const fastDone = Promise.withResolvers<Buffer>();
    p.acceptor.limits.holdMs = 60_000;
    // The acceptor admits whatever arrives; stream 1 never consumes, stream 2 consumes at once.
    const slow = p.opener.open(1);
    const fast = p.opener.open(2);
    const slowDrain: { fn?: () => void } = {};
    const fastDrain: { fn?: () => void } = {};
    slow.attach({ data() {}, end() {}, drain: () => slowDrain.fn?.(), close() {} });
    fast.attach({ data() {}, end() {}, drain: () => fastDrain.fn?.(), close() {} });
    const accept = (id: number) => {
      const s = p.acceptor.accept(id)!;
      if (id === 1)
        s.attach({
          data(c) {
            slowGot.push(c);
            slowBytes += c.length;
            if (slowBytes >= INITIAL_WINDOW) slowFull.resolve();
          },
          end() {},
          drain() {},
          close() {},
        });
      else void collect(s).then(fastDone.resolve, fastDone.reject);
    };
    accept(1);
    accept(2);

    // The slow stream's writer is told to pause once the peer's window is spent.
    const slowData = payload(1, 4 * INITIAL_WINDOW);
    const slowWritten = writeAll(slow, slowData, slowDrain);
    await slowFull.promise;
    // The fast stream moves 32 MiB while the slow one holds its full window unread.
    const fastData = payload(2, 32 << 20);
    void writeAll(fast, fastData, fastDrain);
    const got = await fastDone.promise;
    expect(got.equals(fastData)).toBe(true);
    expect(slowBytes).toBe(INITIAL_WINDOW);
    expect(p.acceptor.buffered).toBe(INITIAL_WINDOW);

    // Once the slow reader catches up, the rest of its stream flows, byte-exact.
    const slowStream = p.acceptor.stream(1)!;
    const rest = Promise.withResolvers<void>();
    slowStream.attach({
      data(c) {
        slowGot.push(c);
        slowBytes += c.length;
        slowStream.consumed(c.length);
      },
      end: () => rest.resolve(),
      drain() {},
      close() {},
    });
    slowStream.consumed(INITIAL_WINDOW);
    await slowWritten;
    await rest.promise;
    expect(Buffer.concat(slowGot).equals(slowData)).toBe(true);
    expect(p.acceptor.buffered).toBe(0);
  });

  test("10,000 streams opened and closed on one channel, byte-exact both ways", async () => {
    const p = await pair({
      onHeld: (id) => {
        const s = p.acceptor.accept(id)!;
        const chunks: Buffer[] = [];
        s.attach({
          data(c) {
            chunks.push(Buffer.from(c));
            s.consumed(c.length);
          },
          end() {
            // The answer is the request reversed: a mixed-up stream cannot pass by accident.
            s.write(Buffer.concat(chunks).reverse());
            s.end();
          },
          drain() {},
          close() {},
        });
      },
    });
    const N = 10_000;
    const BATCH = 250;
    let ok = 0;
    for (let base = 1; base <= N; base += BATCH) {
      const batch: Promise<void>[] = [];
      for (let id = base; id < base + BATCH && id <= N; id++) {
        const s = p.opener.open(id);
        const sent = payload(id, 1 + ((id * 7919) % 3000));
        const reply = collect(s);
        s.write(sent);
        s.end();
        batch.push(
          reply.then((r) => {
            if (r.equals(Buffer.from(sent).reverse())) ok++;
          }),
        );
      }
      await Promise.all(batch);
    }
    expect(ok).toBe(N);
    // Every stream closed on both sides: nothing is left in either map or buffered.
    expect(p.opener.streamCount).toBe(0);
    expect(p.acceptor.streamCount).toBe(0);
    expect(p.acceptor.buffered).toBe(0);
    expect(p.opener.buffered).toBe(0);
  }, 60_000);
});

/** An acceptor channel with a raw socket as its peer: a hostile opener writing any frame it likes. */
async function hostile(limits: Partial<MuxLimits>, onHeld?: (id: number) => void) {
  const frames: MuxFrame[] = [];
  const waiters: (() => void)[] = [];
  const decoder = new MuxDecoder();
  let acceptor!: MuxChannel;
  const closed = Promise.withResolvers<Error | undefined>();
  const opened = Promise.withResolvers<void>();
  const listener = Bun.listen<ChannelEnd>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      ...CHANNEL_HANDLERS,
      open(s) {
        acceptor = new MuxChannel(socketTransport(s), {
          role: "acceptor",
          limits,
          onHeld,
          onClose: (e) => closed.resolve(e),
        });
        s.data = { mux: acceptor };
        opened.resolve();
      },
    },
  });
  const peerClosed = Promise.withResolvers<void>();
  const raw: Socket<undefined> = await Bun.connect({
    hostname: "127.0.0.1",
    port: listener.port,
    socket: {
      data(_s, c) {
        frames.push(...decoder.push(c));
        for (const w of waiters.splice(0)) w();
      },
      close: () => peerClosed.resolve(),
      error() {},
    },
  });
  await opened.promise;
  cleanups.push(() => {
    raw.terminate();
    listener.stop(true);
  });
  /** Resolves with the first frame the acceptor sent that matches. */
  const frame = async (match: (f: MuxFrame) => boolean): Promise<MuxFrame> => {
    for (;;) {
      const f = frames.find(match);
      if (f) return f;
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  return { acceptor: () => acceptor, raw, frames, frame, closed: closed.promise, peerClosed: peerClosed.promise };
}

describe("mux channel against a hostile opener", () => {
  test("frames for ids never admitted are held, never delivered, then reset", async () => {
    const held: number[] = [];
    const h = await hostile({ holdMs: 200 }, (id) => held.push(id));
    h.raw.write(encodeMux({ kind: MuxKind.data, id: 77, data: Buffer.from("DROP TABLE") }));
    h.raw.write(encodeMux({ kind: MuxKind.data, id: 77, data: Buffer.from(" users;") }));
    h.raw.write(encodeMux({ kind: MuxKind.end, id: 77 }));
    const reset = await h.frame((f) => f.id === 77);
    expect(reset).toEqual({ kind: MuxKind.reset, id: 77, reason: MuxReset.refused });
    expect(held).toEqual([77]);
    const a = h.acceptor();
    expect(a.stream(77)).toBeUndefined();
    expect(a.buffered).toBe(0);
    // The word that comes too late admits nothing; late frames for the id are dropped, not held again.
    expect(a.accept(77)).toBeUndefined();
    h.raw.write(encodeMux({ kind: MuxKind.data, id: 77, data: Buffer.from("again") }));
    h.raw.write(encodeMux({ kind: MuxKind.data, id: 78, data: Buffer.from("x") }));
    await h.frame((f) => f.id === 78);
    expect(held).toEqual([77, 78]);
    expect(a.closed).toBe(false);
  });

  test("data past a stream's window resets that stream; the channel stays", async () => {
    const h = await hostile({});
    const a = h.acceptor();
    const s = a.accept(5)!;
    let got = 0;
    s.attach({ data: (c) => void (got += c.length), end() {}, drain() {}, close() {} });
    for (let sent = 0; sent <= INITIAL_WINDOW; sent += 65536)
      h.raw.write(encodeMux({ kind: MuxKind.data, id: 5, data: Buffer.alloc(65536) }));
    expect(await h.frame((f) => f.id === 5)).toEqual({ kind: MuxKind.reset, id: 5, reason: MuxReset.protocol });
    expect(got).toBe(INITIAL_WINDOW);
    expect(a.closed).toBe(false);
    expect(a.buffered).toBe(0);
  });

  test("streams over the cap are reset with 'limit'", async () => {
    const h = await hostile({ maxStreams: 4 });
    for (let id = 1; id <= 6; id++) h.raw.write(encodeMux({ kind: MuxKind.data, id, data: Buffer.from("x") }));
    const r5 = await h.frame((f) => f.id === 5);
    const r6 = await h.frame((f) => f.id === 6);
    expect([r5, r6]).toEqual([
      { kind: MuxKind.reset, id: 5, reason: MuxReset.limit },
      { kind: MuxKind.reset, id: 6, reason: MuxReset.limit },
    ]);
    expect(h.acceptor().streamCount).toBe(4);
  });

  test("a broken frame closes this channel (typed error), never the process", async () => {
    const h = await hostile({});
    h.acceptor().accept(1);
    const bad = Buffer.alloc(MUX_HEADER);
    bad.writeUInt8(42, 0);
    bad.writeUInt32BE(1, 1);
    h.raw.write(bad);
    const err = await h.closed;
    expect(err?.name).toBe("ProtocolError");
    expect(err?.message).toMatch(/unknown channel frame kind 42/);
    await h.peerClosed;
    expect(h.acceptor().streamCount).toBe(0);
  });
});
