// In-process tests for src/guest/node-streams.ts (and data/socket-duplex.ts under it): streams of the
// session handed over as node Duplexes (a shell's terminal, --stdio), against the stand-in coordinator and
// agent of fake-coordinator.ts: real frames, a real splice, the real end-to-end TLS, an echo target.
import { afterEach, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import type { Duplex } from "node:stream";
import { NodeStreams } from "../../src/guest/node-streams.ts";
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
  const ns = new NodeStreams(fake.context());
  fake.pf = ns;
  cleanup.push(() => {
    ns.drop(new Error("test over"));
    fake.stop();
  });
  return { fake, ns };
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
  const d = await ns.open("sess-1");
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

test("a refused open rejects with the coordinator's reason; a stream from another key is refused", async () => {
  const a = await setUp();
  a.fake.refuseWith = "this session has reached its stream limit";
  await expect(a.ns.open("sess-1")).rejects.toThrow("this session has reached its stream limit");

  const b = await setUp({ agentAs: "other" });
  await expect(b.ns.open("sess-1")).rejects.toThrow(
    "stream failed: the host's key is not the one this session was approved for",
  );
});

test("drop() rejects a stream still being asked for and destroys the live ones", async () => {
  const { fake, ns } = await setUp();
  const live = await ns.open("sess-1");
  const closed = new Promise<void>((r) => live.once("close", () => r()));
  live.on("error", () => {});
  fake.holdAnswers = true;
  const waiting = ns.open("sess-1");
  await fake.until(() => fake.unanswered.length === 1);
  ns.drop(new Error("the session ended"));
  await expect(waiting).rejects.toThrow("the session ended");
  await closed;
  expect(live.destroyed).toBe(true);
});
