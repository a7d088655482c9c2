// The two ends a session will run on its data channel, over the real splice with keys pinned: the
// guest's local listener (guest/channel-forward.ts) and the agent's stream server (host/channel-server.ts).
// The test plays the coordinator: it hears each `open` (announce) and gives the word (admit) or refuses.
import { afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import { ChannelForward } from "../../src/guest/channel-forward.ts";
import { ChannelServer } from "../../src/host/channel-server.ts";
import type { StreamReport } from "../../src/wire/protocol.ts";
import { splicedChannel, testPki } from "./channel-helpers.ts";

const stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0).reverse()) s();
});

/** Events as promises: the n-th value pushed, whenever it comes. */
class Events<T> {
  readonly seen: T[] = [];
  private waiters: { n: number; resolve: (v: T) => void }[] = [];
  push(v: T): void {
    this.seen.push(v);
    for (const w of [...this.waiters]) {
      if (this.seen.length > w.n) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(this.seen[w.n]!);
      }
    }
  }
  nth(n: number): Promise<T> {
    if (this.seen.length > n) return Promise.resolve(this.seen[n]!);
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }
}

describe("a session's streams on one channel", async () => {
  const pki = await testPki();

  async function setup() {
    // The target: an echo server that counts who reached it.
    const targetConns = new Events<net.Socket>();
    const srv = net.createServer((s) => {
      s.on("error", () => {});
      targetConns.push(s);
      s.pipe(s);
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const target = { host: "127.0.0.1", port: (srv.address() as net.AddressInfo).port, label: "127.0.0.1:echo" };
    const held = new Events<number>();
    const { g, a, cut } = await splicedChannel(pki, stops, { acceptor: { onHeld: (id) => held.push(id) } });
    const reports = new Events<StreamReport>();
    const server = new ChannelServer(a.mux!, { report: (r) => reports.push(r) });
    const opens = new Events<number>();
    // The session's link, as the test plays it: each local connection opens the next stream and is announced.
    let next = 1;
    const link = {
      open: (w: { ready(s: NonNullable<typeof g.mux> extends { open(id: number): infer S } ? S : never): void }) => {
        const id = next++;
        w.ready(g.mux!.open(id));
        opens.push(id);
      },
    };
    const forward = new ChannelForward({ link, live: () => true });
    const { port } = forward.listen("127.0.0.1", 0);
    stops.push(() => {
      forward.close();
      server.close();
      for (const c of targetConns.seen) c.destroy();
      srv.close();
    });
    const client = () => {
      const c = net.connect(port, "127.0.0.1");
      c.on("error", () => {});
      stops.push(() => c.destroy());
      const data = new Events<string>();
      let all = "";
      c.on("data", (d) => {
        all += d.toString();
        data.push(all);
      });
      const closed = new Promise<void>((r) => c.on("close", () => r()));
      return { c, data, closed };
    };
    return { target, targetConns, held, reports, server, opens, forward, port, client, g, a, cut };
  }

  test("the guest's first bytes wait at the agent for the word; the target is reached only after it", async () => {
    const t = await setup();
    const cl = t.client();
    cl.c.write("hello");
    const id = await t.opens.nth(0);
    // The bytes crossed the channel and wait at the agent, held; nobody dialled the target.
    expect(await t.held.nth(0)).toBe(id);
    expect(t.targetConns.seen.length).toBe(0);
    // The coordinator's word (after its audit line): now the target is reached and the bytes arrive.
    t.server.admit(id, "st1", t.target);
    expect(await cl.data.nth(0)).toBe("hello");
    expect(t.targetConns.seen.length).toBe(1);
    cl.c.end();
    const r = await t.reports.nth(0);
    expect(r).toEqual({ streamId: "st1", state: "closed", up: 5, down: 5, reason: undefined });
    await cl.closed;
  });

  test("a refused stream: what the guest sent never reaches the target, and its connection closes", async () => {
    const t = await setup();
    const cl = t.client();
    cl.c.write("DROP TABLE users;");
    const id = await t.opens.nth(0);
    await t.held.nth(0);
    t.server.refuse(id);
    await cl.closed;
    expect(t.targetConns.seen.length).toBe(0);
    expect(t.a.mux!.buffered).toBe(0);
    // The word that comes after a refusal admits nothing.
    t.server.admit(id, "st-late", t.target);
    expect(await t.reports.nth(0)).toMatchObject({ streamId: "st-late", state: "failed" });
    expect(t.targetConns.seen.length).toBe(0);
  });

  test("a target that refuses: the stream is reset and its report says why", async () => {
    const t = await setup();
    const free = net.createServer();
    await new Promise<void>((r) => free.listen(0, "127.0.0.1", r));
    const closedPort = (free.address() as net.AddressInfo).port;
    await new Promise<void>((r) => free.close(() => r()));
    const cl = t.client();
    cl.c.write("x");
    const id = await t.opens.nth(0);
    t.server.admit(id, "st1", { host: "127.0.0.1", port: closedPort, label: `127.0.0.1:${closedPort}` });
    await cl.closed;
    const r = await t.reports.nth(0);
    expect(r.state).toBe("closed");
    expect(r.reason).toMatch(/refused the connection/);
  });

  test("cutting one stream (revoke, a scope's end) leaves the others running", async () => {
    const t = await setup();
    const one = t.client();
    const two = t.client();
    one.c.write("1");
    two.c.write("2");
    const ids = [await t.opens.nth(0), await t.opens.nth(1)];
    t.server.admit(ids[0]!, "st1", t.target);
    t.server.admit(ids[1]!, "st2", t.target);
    await one.data.nth(0);
    await two.data.nth(0);
    // While open, the agent's reports carry each stream's bytes so far (the coordinator's idle clock).
    expect(t.server.openReports()).toEqual([
      { streamId: "st1", state: "open", up: 1, down: 1 },
      { streamId: "st2", state: "open", up: 1, down: 1 },
    ]);
    t.server.cut("st1");
    await one.closed;
    two.c.write("3");
    expect(await two.data.nth(1)).toBe("23");
    expect((await t.reports.nth(0)).streamId).toBe("st1");
  });

  test("the coordinator cutting the channel (revoke) ends every stream: clients and targets closed, each reported", async () => {
    const t = await setup();
    const clients = [t.client(), t.client(), t.client()];
    for (const [i, c] of clients.entries()) c.c.write(String(i));
    for (let i = 0; i < 3; i++) t.server.admit(await t.opens.nth(i), `st${i}`, t.target);
    for (const c of clients) await c.data.nth(0);
    const targetsClosed = t.targetConns.seen.map((s) => new Promise<void>((r) => s.on("close", () => r())));
    t.cut("revoked by the operator");
    await Promise.all(clients.map((c) => c.closed));
    await Promise.all(targetsClosed);
    const reports = await Promise.all([0, 1, 2].map((i) => t.reports.nth(i)));
    expect(reports.map((r) => r.streamId).sort()).toEqual(["st0", "st1", "st2"]);
    expect(reports.every((r) => r.state === "closed" && r.up === 1 && r.down === 1)).toBe(true);
    expect(t.g.mux!.closed && t.a.mux!.closed).toBe(true);
  });

  test("10,000 streams opened and closed on one channel, 100 at a time: every payload byte-exact, every stream reported once", async () => {
    const t = await setup();
    // The coordinator's part, played at once: every announced stream is admitted.
    let admitted = 0;
    const admitAll = async () => {
      for (;;) {
        const id = await t.opens.nth(admitted);
        t.server.admit(id, `st${id}`, t.target);
        admitted++;
      }
    };
    void admitAll();
    const N = 10_000;
    let next = 0;
    const worker = async () => {
      while (next < N) {
        const i = next++;
        const payload = Buffer.alloc(1 + (i % 4096), i % 251);
        const echoed = await new Promise<Buffer>((resolve, reject) => {
          const c = net.connect(t.port, "127.0.0.1");
          const parts: Buffer[] = [];
          c.on("data", (d: Buffer) => parts.push(d));
          c.on("end", () => resolve(Buffer.concat(parts)));
          c.on("error", reject);
          c.end(payload);
        });
        if (!echoed.equals(payload)) throw new Error(`stream ${i}: ${echoed.length} bytes back of ${payload.length}`);
      }
    };
    await Promise.all(Array.from({ length: 100 }, worker));
    await t.reports.nth(N - 1);
    const closed = t.reports.seen.filter((r) => r.state === "closed");
    expect(closed).toHaveLength(N);
    expect(new Set(closed.map((r) => r.streamId)).size).toBe(N);
    expect(closed.every((r) => r.up === r.down && r.reason === undefined)).toBe(true);
    // Nothing is left behind on either end of the channel.
    expect(t.g.mux!.streamCount).toBe(0);
    expect(t.a.mux!.streamCount).toBe(0);
    expect(t.a.mux!.buffered).toBe(0);
  }, 120_000);
});
