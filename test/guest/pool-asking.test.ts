// src/guest/stream-pool.ts against the coordinator's flood guard (64 frames in flight): a big pool asks a
// few spares at a time, and a pool whose connection was cut for flooding shrinks and waits before filling.
import { expect, test } from "bun:test";
import type { ClientFrame } from "../../src/wire/protocol.ts";
import { MAX_ASKING, StreamPool } from "../../src/guest/stream-pool.ts";
import type { StreamContext } from "../../src/guest/stream-context.ts";

function fakeCtx() {
  const sent: ClientFrame[] = [];
  let n = 0;
  let live = true;
  const ctx = {
    send: (f: ClientFrame) => sent.push(f),
    dataAddress: () => ({ host: "127.0.0.1", port: 1 }),
    live: () => (live ? { approved: { sessionId: "s-1" } } : undefined),
    nextRef: (p: string) => `${p}${++n}`,
    verify: () => ({}),
    socks: new Set(),
  } as unknown as StreamContext;
  return { ctx, sent, setLive: (v: boolean) => (live = v) };
}

test("a pool of 64 never has more than MAX_ASKING opens unanswered (the flood guard allows 64 frames)", () => {
  const { ctx, sent } = fakeCtx();
  const pool = new StreamPool(ctx, 64);
  pool.fill();
  expect(MAX_ASKING).toBeLessThan(64);
  expect(sent).toHaveLength(MAX_ASKING);
  expect(sent.every((f) => f.t === "open" && f.pool === true)).toBe(true);
  // Filling again while they are unanswered asks for nothing more.
  pool.fill();
  expect(sent).toHaveLength(MAX_ASKING);
});

test("cut for flooding: the pool halves and waits before it asks again, across the resume", async () => {
  const { ctx, sent, setLive } = fakeCtx();
  const pool = new StreamPool(ctx, 64);
  pool.fill();
  setLive(false);
  pool.drop();
  pool.flooded();
  expect(pool.keeps).toBe(32);
  setLive(true);
  sent.length = 0;
  // The session resumed at once: no burst of opens follows it.
  pool.fill();
  expect(sent).toHaveLength(0);
  for (let i = 0; i < 6; i++) pool.flooded();
  expect(pool.keeps).toBe(1);
  pool.drop();
});
