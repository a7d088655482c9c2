// Unit tests for src/wire/reconnect.ts: the one retry loop of agent, approver and guest.
import { expect, test } from "bun:test";
import { Reconnector } from "../../src/wire/reconnect.ts";

test("retries until connect succeeds, then starts counting afresh", async () => {
  const delays: number[] = [];
  let tries = 0;
  let done!: () => void;
  const connected = new Promise<void>((r) => (done = r));
  const r = new Reconnector({
    connect: async () => {
      if (++tries < 3) throw new Error(`try ${tries} failed`);
      done();
    },
    capMs: 1,
    onRetry: (_e, d) => delays.push(d),
    onGiveUp: () => {
      throw new Error("must not give up");
    },
  });
  r.lost(new Error("gone"));
  await connected;
  expect(tries).toBe(3);
  expect(delays).toHaveLength(3);
  r.stop();
});

test("a fatal error gives up at once, without an attempt", () => {
  let gaveUp: Error | undefined;
  let tries = 0;
  const r = new Reconnector({
    connect: async () => void tries++,
    fatal: (e) => e?.message === "share_taken",
    onRetry: () => {
      throw new Error("must not retry");
    },
    onGiveUp: (e) => (gaveUp = e),
  });
  r.lost(new Error("share_taken"));
  expect(gaveUp?.message).toBe("share_taken");
  expect(tries).toBe(0);
});

test("gives up once the allowed time since the first loss has passed; stop() ends retrying", async () => {
  let gaveUp = false;
  let tries = 0;
  const r = new Reconnector({
    connect: async () => void tries++,
    giveUpAfterMs: -1,
    onRetry: () => {},
    onGiveUp: () => (gaveUp = true),
  });
  r.lost();
  expect(gaveUp).toBe(true);
  const s = new Reconnector({ connect: async () => void tries++, onRetry: () => {}, onGiveUp: () => {} });
  s.lost();
  s.stop();
  await Bun.sleep(300); // longer than the shortest backoff (200 ms): a stopped loop never calls connect
  expect(tries).toBe(0);
});

test("waits only grow, up to the cap, however the jitter falls", async () => {
  const delays: number[] = [];
  let tries = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const r = new Reconnector({
    connect: async () => {
      if (++tries < 6) throw new Error("still down");
      done();
    },
    capMs: 1,
    onRetry: (_e, d) => delays.push(d),
    onGiveUp: () => {},
  });
  r.lost();
  await finished;
  for (let i = 1; i < delays.length; i++) expect(delays[i]!).toBeGreaterThanOrEqual(delays[i - 1]!);
  r.stop();
});
