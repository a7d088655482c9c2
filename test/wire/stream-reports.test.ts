// Direct-stream reports are batched: a burst of streams becomes a few frames a session, in order, never a flood.
import { expect, test } from "bun:test";
import { StreamReports } from "../../src/wire/stream-reports.ts";
import { ClientFrame, MAX_STREAM_REPORTS } from "../../src/wire/protocol.ts";
import * as v from "valibot";

test("1,000 reports of one session and a few of another go out as a handful of valid frames, in order", async () => {
  const sent: ClientFrame[] = [];
  let flushed!: () => void;
  const done = new Promise<void>((r) => (flushed = r));
  const reports = new StreamReports((f) => {
    sent.push(f);
    if (sent.length === 5) flushed();
  });
  for (let i = 0; i < 1000; i++)
    reports.add("s-a", { streamId: `t-${i}`, state: i % 2 ? "closed" : "open", up: i, down: i });
  for (let i = 0; i < 3; i++) reports.add("s-b", { streamId: `u-${i}`, state: "failed", reason: "refused" });
  // Nothing is sent while this tick adds more: the reports wait to be batched.
  expect(sent).toHaveLength(0);
  await done;
  expect(sent).toHaveLength(Math.ceil(1000 / MAX_STREAM_REPORTS) + 1);
  for (const f of sent) expect(v.safeParse(ClientFrame, f).success).toBe(true);
  const a = sent
    .filter((f) => f.t === "direct-stream" && f.sessionId === "s-a")
    .flatMap((f) => (f.t === "direct-stream" ? f.reports : []));
  expect(a.map((r) => r.streamId)).toEqual(Array.from({ length: 1000 }, (_, i) => `t-${i}`));
});

test("after a quiet spell a report goes out at the end of its tick; reports right behind it wait for the next batch", async () => {
  const sent: ClientFrame[] = [];
  let second!: () => void;
  const next = new Promise<void>((r) => (second = r));
  const reports = new StreamReports((f) => {
    sent.push(f);
    if (sent.length === 2) second();
  });
  reports.add("s-a", { streamId: "t-1", state: "closed", up: 10, down: 20 });
  expect(sent).toHaveLength(0);
  await Promise.resolve();
  // A stream's close is at the coordinator at once, ahead of a session end that may follow it.
  expect(sent).toEqual([
    { t: "direct-stream", sessionId: "s-a", reports: [{ streamId: "t-1", state: "closed", up: 10, down: 20 }] },
  ]);
  reports.add("s-a", { streamId: "t-2", state: "closed", up: 1, down: 2 });
  reports.add("s-a", { streamId: "t-3", state: "open" });
  await Promise.resolve();
  expect(sent).toHaveLength(1);
  await next;
  expect(sent[1]).toMatchObject({ sessionId: "s-a", reports: [{ streamId: "t-2" }, { streamId: "t-3" }] });
});
