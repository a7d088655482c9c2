// The guest's pacing of `open` frames (guest/open-pacer.ts): a lone stream is told at once, a burst over
// many turns becomes a few frames (never a flood for the coordinator's guard), and nothing is lost or
// told twice.
import { expect, test } from "bun:test";
import { OpenPacer } from "../../src/guest/open-pacer.ts";
import { MAX_OPENS_IN_FRAME } from "../../src/wire/protocol.ts";

test("a lone stream is told at the end of its turn, in a frame of its own", async () => {
  const frames: [string, number[]][] = [];
  const p = new OpenPacer((c, ids) => frames.push([c, ids]));
  p.add("c1", 1);
  expect(frames).toEqual([]);
  await Promise.resolve();
  expect(frames).toEqual([["c1", [1]]]);
});

test("2,000 streams opened one per turn are told in fewer frames than streams, each once and in order", async () => {
  const frames: number[][] = [];
  const p = new OpenPacer((_c, ids) => frames.push(ids));
  for (let i = 1; i <= 2000; i++) {
    p.add("c1", i);
    await new Promise<void>((r) => setImmediate(r));
  }
  const all = () => frames.flat();
  while (all().length < 2000) await Bun.sleep(2);
  expect(all()).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
  expect(frames.every((f) => f.length <= MAX_OPENS_IN_FRAME)).toBe(true);
  // The bucket's first frames went at once, the rest were gathered (how many depends on the turns' pace).
  expect(frames.length).toBeLessThan(2000);
});

test("1,000 streams opened in one turn are 4 frames", async () => {
  const frames: number[][] = [];
  const p = new OpenPacer((_c, ids) => frames.push(ids));
  for (let i = 1; i <= 1000; i++) p.add("c1", i);
  while (frames.flat().length < 1000) await Bun.sleep(1);
  expect(frames.map((f) => f.length)).toEqual([256, 256, 256, 232]);
});

test("a full frame goes at once; a forgotten channel's waiting streams are not told", async () => {
  const frames: [string, number[]][] = [];
  const p = new OpenPacer((c, ids) => frames.push([c, ids]));
  for (let i = 1; i <= MAX_OPENS_IN_FRAME; i++) p.add("c1", i);
  expect(frames).toHaveLength(1);
  expect(frames[0]![1]).toHaveLength(MAX_OPENS_IN_FRAME);
  p.add("c2", 1);
  p.forget("c2");
  await Bun.sleep(5);
  expect(frames.map(([c]) => c)).toEqual(["c1"]);
});
