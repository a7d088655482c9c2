// In-process tests for src/guest/port-forward.ts (and the stream pool it keeps, guest/stream-pool.ts):
// local TCP connections on loopback become streams of the session, answered by a stand-in coordinator and
// agent (fake-coordinator.ts) over real frames, a real splice and the real end-to-end TLS.
import { afterEach, beforeAll, expect, test } from "bun:test";
import { PortForward } from "../../src/guest/port-forward.ts";
import { client, makePki, type Pki } from "../data/fixtures.ts";
import { FakeCoordinator } from "./fake-coordinator.ts";

let pki: Pki;
beforeAll(async () => {
  pki = await makePki();
});
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0).reverse()) f();
});

async function setUp(pool: number, o: { agentAs?: keyof Pki } = {}) {
  const fake = await FakeCoordinator.start({ pki, agentAs: o.agentAs ? (pki[o.agentAs] as never) : undefined });
  const pf = new PortForward(fake.context());
  fake.pf = pf;
  const { port } = pf.listen("127.0.0.1", 0, pool);
  cleanup.push(() => {
    pf.drop();
    pf.stop();
    fake.stop();
  });
  return { fake, pf, port };
}

async function echoThrough(port: number, text: string): Promise<string> {
  const c = await client(port);
  cleanup.push(() => c.sock.terminate());
  c.sock.write(text);
  c.sock.shutdown();
  await c.ended;
  return c.got().toString();
}

test("40 connections at once: at most 32 opens wait unanswered, and every connection is echoed whole, FIN and all", async () => {
  const { fake, port } = await setUp(0);
  fake.holdAnswers = true;
  const clients = await Promise.all(Array.from({ length: 40 }, () => client(port)));
  for (const c of clients) cleanup.push(() => c.sock.terminate());
  // Each accepted connection takes a ref; once all 40 have, every open they caused has been sent.
  await fake.until(() => fake.refsTaken === 40);
  await fake.barrier();
  expect(fake.unanswered.length).toBe(32);
  fake.holdAnswers = false;
  for (const open of fake.unanswered.splice(0)) fake.answer(open);
  clients.forEach((c, i) => {
    c.sock.write(`connection ${i}`);
    c.sock.shutdown();
  });
  await Promise.all(clients.map((c) => c.ended));
  expect(clients.map((c) => c.got().toString())).toEqual(clients.map((_, i) => `connection ${i}`));
  expect(fake.opens().length).toBe(40);
  await fake.echo.endedCount(40);
});

test("a refused open closes its local connection and says why", async () => {
  const { fake, port } = await setUp(0);
  fake.refuseWith = "this session has reached its stream limit";
  const c = await client(port);
  cleanup.push(() => c.sock.terminate());
  await c.closed;
  expect(fake.errors).toEqual(["this session has reached its stream limit"]);
  expect(fake.echo.conns.size).toBe(0);
});

test("a stream answered by another key than the approved host's is refused, and its local connection closed", async () => {
  const { fake, port } = await setUp(0, { agentAs: "other" });
  const c = await client(port);
  cleanup.push(() => c.sock.terminate());
  c.sock.write("secret");
  await c.closed;
  expect(fake.errors).toEqual(["stream failed: the host's key is not the one this session was approved for"]);
  expect(fake.echo.ended).toEqual([]);
});

test("the pool keeps spares through their TLS: a connection takes one with 'use' (no open), and it is replaced", async () => {
  const { fake, port } = await setUp(2);
  await fake.until(() => fake.agentVerified === 2 && fake.held.size === 2);
  expect(fake.opens(true).length).toBe(2);
  expect(await echoThrough(port, "through a spare")).toBe("through a spare");
  const uses = fake.frames.filter((f) => f.t === "use");
  expect(uses.length).toBe(1);
  expect(fake.opens(false).length).toBe(0);
  // The spare's replacement is asked for, and comes up.
  await fake.until(() => fake.opens(true).length === 3 && fake.held.size === 2);
});

test("a spare whose far end half-closes is dropped and replaced; drop() cuts the spares", async () => {
  const { fake, pf, port } = await setUp(1);
  await fake.until(() => fake.held.size === 1);
  const [first] = [...fake.held.values()];
  // The host's side never half-closes a spare: a FIN means it is gone.
  first!.shutdown();
  await fake.until(() => fake.opens(true).length === 2 && fake.held.size === 2);
  // The dead spare's agent side closes (the guest cut it); the new one serves.
  await fake.until(() => first!.data.closed);
  fake.held.delete([...fake.held.entries()].find(([, s]) => s === first)![0]);
  expect(await echoThrough(port, "after a dead spare")).toBe("after a dead spare");
  await fake.until(() => fake.held.size === 1);
  const [spare] = [...fake.held.values()];
  pf.drop();
  await fake.until(() => spare!.data.closed);
});

for (const order of ["retired", "refusal-first"] as const)
  test(`a spare retired as it is put to work (${order}): the use is refused and the client's bytes go whole on a new stream`, async () => {
    const { fake, port } = await setUp(1);
    await fake.until(() => fake.held.size === 1);
    fake.onUse = order;
    expect(await echoThrough(port, "sent again, once")).toBe("sent again, once");
    expect(fake.frames.filter((f) => f.t === "use").length).toBe(1);
    // A plain open carried it, and the target saw the bytes once.
    expect(fake.opens(false).length).toBe(1);
    await fake.echo.endedCount(1);
    expect(fake.echo.ended).toEqual(["sent again, once".length]);
    expect(fake.errors).toEqual([]);
  });

test("a spare put to work that ends without a word and without a refusal was served: the client's bytes are not sent again", async () => {
  const { fake, port } = await setUp(1);
  await fake.until(() => fake.held.size === 1);
  fake.onUse = "silent";
  const c = await client(port);
  cleanup.push(() => c.sock.terminate());
  c.sock.write("only once");
  await c.ended;
  expect(c.got().length).toBe(0);
  expect(fake.frames.filter((f) => f.t === "use").length).toBe(1);
  expect(fake.opens(false).length).toBe(0);
});

test("a spare put to work whose host side half-closes without a word still carries what the client sends after", async () => {
  const { fake, port } = await setUp(1);
  await fake.until(() => fake.held.size === 1);
  fake.onUse = "half-close";
  const c = await client(port);
  cleanup.push(() => c.sock.terminate());
  c.sock.write("before ");
  await fake.until(() => fake.heard === "before ");
  // The FIN reaches the client once no refusal came (the use was served); the pair stood meanwhile.
  await c.ended;
  c.sock.write("after");
  await fake.until(() => fake.heard === "before after");
  expect(fake.opens(false).length).toBe(0);
});
