// In-process tests for src/guest/node-streams.ts and guest/channel-link.ts under it: streams of the
// session's data channel handed over as node Duplexes (a shell's terminal, --stdio), against the stand-in
// coordinator and agent of fake-coordinator.ts: real frames, a real splice, the real end-to-end TLS, the
// agent's own channel code, an echo target.
import { afterEach, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import type { Duplex } from "node:stream";
import { NodeStreams } from "../../src/guest/node-streams.ts";
import { ChannelLink } from "../../src/guest/channel-link.ts";
import { makePki, type Pki } from "../data/fixtures.ts";
import { FakeCoordinator } from "./fake-coordinator.ts";

let pki: Pki;
beforeAll(async () => {
  pki = await makePki();
});
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0).reverse()) f();
});

async function setUp(o: { agentAs?: "other" } = {}) {
  const fake = await FakeCoordinator.start({ pki, agentAs: o.agentAs ? pki[o.agentAs] : undefined });
  const link = new ChannelLink(fake.context());
  const ns = new NodeStreams(link);
  fake.pf = link;
  cleanup.push(() => {
    link.drop(new Error("test over"));
    ns.drop();
    fake.stop();
  });
  return { fake, ns, link };
}

/** Everything a Duplex gives until it ends. */
function readAll(d: Duplex): Promise<Buffer> {
  const parts: Buffer[] = [];
  d.on("data", (c: Buffer) => parts.push(c));
  return new Promise((resolve, reject) => {
    d.once("end", () => resolve(Buffer.concat(parts)));
    d.once("error", reject);
  });
}

test("a stream opened as a Duplex carries 8 MiB both ways with backpressure, and ends cleanly", async () => {
  const { ns } = await setUp();
  const d = await ns.open();
  const back = readAll(d);
  const chunk = Buffer.alloc(64 * 1024);
  const sent = createHash("sha256");
  for (let i = 0; i < 128; i++) {
    chunk.fill(i);
    sent.update(chunk);
    // Respect the stream's own backpressure, as a pipe would.
    if (!d.write(Buffer.from(chunk))) await new Promise<void>((r) => d.once("drain", () => r()));
  }
  d.end();
  const got = await back;
  expect(got.length).toBe(128 * 64 * 1024);
  expect(createHash("sha256").update(got).digest("hex")).toBe(sent.digest("hex"));
});

test("a refused open rejects with the coordinator's reason; a channel from another key is refused", async () => {
  const a = await setUp();
  a.fake.refuseStreamsWith = "this session has reached its stream limit";
  await expect(a.ns.open()).rejects.toThrow("this session has reached its stream limit");
  a.fake.refuseStreamsWith = undefined;
  // The refusal cost the stream, not the channel: the next one goes on the same channel.
  const d = await a.ns.open();
  expect(a.fake.opens(true).length).toBe(1);
  d.destroy();

  const b = await setUp({ agentAs: "other" });
  await expect(b.ns.open()).rejects.toThrow(
    "the data channel failed: the host's key is not the one this session was approved for",
  );
});

test("drop() rejects a stream still waiting for its channel and destroys the live ones", async () => {
  const { fake, ns, link } = await setUp();
  const live = await ns.open();
  const closed = new Promise<void>((r) => live.once("close", () => r()));
  live.on("error", () => {});
  // A renewal (as when the path goes direct) retires the channel: the next stream waits for a new one.
  fake.holdAnswers = true;
  link.renew("relay");
  const waiting = ns.open();
  await fake.until(() => fake.unanswered.length === 1);
  link.drop(new Error("the session ended"));
  ns.drop();
  await expect(waiting).rejects.toThrow("the session ended");
  await closed;
  expect(live.destroyed).toBe(true);
});

test("many streams share one channel: each is byte-exact, and each reports its bytes when it ends", async () => {
  const { fake, ns } = await setUp();
  const ds = await Promise.all(Array.from({ length: 20 }, () => ns.open()));
  const got = await Promise.all(
    ds.map((d, i) => {
      const back = readAll(d);
      d.end(Buffer.alloc(1000 + i, i));
      return back;
    }),
  );
  got.forEach((g, i) => {
    expect(g.equals(Buffer.alloc(1000 + i, i))).toBe(true);
  });
  expect(fake.opens(true).length).toBe(1);
  // Opened in one turn: told to the coordinator in one frame.
  expect(fake.opens(false).flatMap((f) => f.mux ?? []).length).toBe(20);
  expect(fake.opens(false).length).toBe(1);
  await fake.until(() => {
    const closed = fake.reports
      .flatMap((f) => (f.t === "direct-stream" ? f.reports : []))
      .filter((r) => r.state === "closed");
    return closed.length === 20 && closed.every((r) => r.up === r.down && r.up! >= 1000);
  });
});
