// A node Duplex over a channel stream (shells, stdin/stdout): byte-exact both ways with half-close, and a
// reader that stops reading holds back its own stream's window only.
import { afterEach, describe, expect, test } from "bun:test";
import { MuxDuplex } from "../../src/data/mux-duplex.ts";
import { INITIAL_WINDOW } from "../../src/wire/mux-frames.ts";
import { channelPair, collect, type ChannelPair } from "./mux-helpers.ts";

const stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});
async function pair(): Promise<ChannelPair> {
  const p = await channelPair();
  stops.push(() => p.stop());
  return p;
}

const bytes = (n: number, seed: number) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * seed + (i >>> 11)) & 0xff;
  return b;
};

describe("MuxDuplex", () => {
  test("4 MiB through an echoing Duplex and back, byte-exact, ended both ways", async () => {
    const p = await pair();
    const far = new MuxDuplex(p.acceptor.accept(1)!);
    far.pipe(far); // echo: the far end's reader writes back what it reads, ending when it ends
    const near = new MuxDuplex(p.opener.open(1));
    const sent = bytes(4 << 20, 13);
    const chunks: Buffer[] = [];
    const got = new Promise<Buffer>((resolve, reject) => {
      near.on("data", (c: Buffer) => chunks.push(c));
      near.on("end", () => resolve(Buffer.concat(chunks)));
      near.on("error", reject);
    });
    near.end(sent);
    expect((await got).equals(sent)).toBe(true);
    await p.streamsGone();
  });

  test("a Duplex nobody reads holds its stream at one window; another stream still moves", async () => {
    const p = await pair();
    const idle = new MuxDuplex(p.acceptor.accept(1)!);
    const writer = new MuxDuplex(p.opener.open(1));
    const big = bytes(4 * INITIAL_WINDOW, 7);
    writer.end(big);
    // Stream 2 moves 8 MiB meanwhile.
    const s2 = p.opener.open(2);
    const got2 = collect(p.acceptor.accept(2)!);
    const sent2 = bytes(8 << 20, 3);
    for (let at = 0; at < sent2.length; at += 65536) s2.write(sent2.subarray(at, at + 65536));
    s2.end();
    expect((await got2).equals(sent2)).toBe(true);
    p.acceptor.stream(2)!.end();
    expect(p.acceptor.stream(1)!.bytesIn).toBe(INITIAL_WINDOW);
    // Reading now lets the rest through, in order.
    const chunks: Buffer[] = [];
    await new Promise<void>((resolve) => {
      idle.on("data", (c: Buffer) => chunks.push(c));
      idle.on("end", resolve);
    });
    expect(Buffer.concat(chunks).equals(big)).toBe(true);
    idle.end();
    await p.streamsGone();
  });
});
