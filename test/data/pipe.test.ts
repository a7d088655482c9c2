// In-process tests for src/data/pipe.ts on real loopback sockets: a relay pairs each accepted connection
// with one to a target, as the coordinator's splice and the guest's port forward do. Backpressure holds
// the path instead of buffering it, FIN travels each way on its own, early bytes wait and keep their order,
// and a reset on one side cuts the other.
import { afterEach, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import type { Socket, TCPSocketListener } from "bun";
import { cut, MAX_EARLY_BYTES, newEnd, pair, PIPE_HANDLERS, type End } from "../../src/data/pipe.ts";
import { Changes, client, EchoTarget, signal } from "./fixtures.ts";

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0).reverse()) f();
});

/** A relay to `targetPort`: every connection's End, and a gate that holds the pairing until opened. */
function relay(targetPort: number, gate?: Promise<void>) {
  const ends: Socket<End>[] = [];
  const closes: { side: "client" | "target"; clean: boolean }[] = [];
  const changes = new Changes();
  const closed = (side: "client" | "target") => (_s: Socket<End>, clean: boolean) => {
    closes.push({ side, clean });
    changes.notify();
  };
  const server: TCPSocketListener<End> = Bun.listen<End>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      ...PIPE_HANDLERS,
      data: (s, chunk) => {
        PIPE_HANDLERS.data!(s, chunk);
        changes.notify();
      },
      end: (s) => {
        PIPE_HANDLERS.end!(s);
        changes.notify();
      },
      open: (s) => {
        s.data = newEnd({ onClose: closed("client") });
        ends.push(s);
        void (async () => {
          await gate;
          const t = await Bun.connect<End>({
            hostname: "127.0.0.1",
            port: targetPort,
            allowHalfOpen: true,
            data: newEnd({ onClose: closed("target") }),
            socket: PIPE_HANDLERS,
          });
          ends.push(t);
          pair(s, t);
          changes.notify();
        })();
      },
    },
  });
  cleanup.push(() => {
    for (const e of ends) e.terminate();
    server.stop(true);
  });
  return { port: server.port, ends, closes, until: (cond: () => boolean) => changes.until(cond) };
}

test("a target that does not read stops the sender: the relay holds at most a chunk, and every byte arrives in order", async () => {
  // The target reads nothing until told, then hashes what it gets.
  const hash = createHash("sha256");
  let received = 0;
  const done = signal();
  const opened = signal();
  const conns: Socket<undefined>[] = [];
  const target = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      open: (s) => {
        conns.push(s);
        s.pause();
        opened.resolve();
      },
      data: (_s, c) => {
        hash.update(c);
        received += c.length;
      },
      end: () => done.resolve(),
      error() {},
    },
  });
  cleanup.push(() => {
    for (const c of conns) c.terminate();
    target.stop(true);
  });
  const r = relay(target.port);
  const c = await client(r.port);
  cleanup.push(() => c.sock.terminate());
  await r.until(() => r.ends.length === 2);
  await opened.promise;

  // A pattern, written until the path pushes back; without backpressure the relay would read all 256 MiB.
  const pattern = Buffer.alloc(65_536 + 251);
  for (let i = 0; i < pattern.length; i++) pattern[i] = i % 251;
  const sentHash = createHash("sha256");
  let sent = 0;
  const LIMIT = 256 * 1024 * 1024;
  while (sent < LIMIT) {
    const chunk = pattern.subarray(sent % 251, (sent % 251) + 65_536);
    const n = c.sock.write(chunk);
    if (n > 0) sentHash.update(chunk.subarray(0, n));
    sent += Math.max(n, 0);
    if (n < chunk.length) break;
    // Let the relay read what it will: a relay with no backpressure keeps reading all of it.
    await new Promise<void>((res) => setImmediate(res));
  }
  expect(sent).toBeLessThan(LIMIT);
  // The path is full: the relay paused its reader with one read's tail waiting for the target.
  expect(r.ends.some((e) => (e.data.pending?.length ?? 0) > 0)).toBe(true);
  // What the relay holds in memory for this stream: the unwritten tail of one read, never the stream.
  const held = r.ends.reduce((n, e) => n + (e.data.pending?.length ?? 0) + e.data.earlyBytes, 0);
  expect(held).toBeLessThanOrEqual(MAX_EARLY_BYTES);

  c.sock.shutdown();
  for (const s of conns) s.resume();
  await done.promise;
  expect(received).toBe(sent);
  expect(hash.digest("hex")).toBe(sentHash.digest("hex"));
});

test("a half-close travels each way on its own: the client's FIN reaches the target, the reply still comes back", async () => {
  const echo = new EchoTarget();
  cleanup.push(() => echo.stop());
  const r = relay(echo.port);
  const c = await client(r.port);
  cleanup.push(() => c.sock.terminate());
  c.sock.write("hello through the pipe");
  c.sock.shutdown();
  await echo.endedCount(1);
  await c.ended;
  expect(c.got().toString()).toBe("hello through the pipe");
  expect(await c.closed).toBe(true);
  // Both of the relay's sockets closed in order, neither cut.
  await r.until(() => r.closes.length === 2);
  expect(r.closes.every((x) => x.clean)).toBe(true);
});

test("bytes and a FIN sent before the pair exists wait, then arrive in order", async () => {
  const echo = new EchoTarget();
  cleanup.push(() => echo.stop());
  const gate = signal();
  const r = relay(echo.port, gate.promise);
  const c = await client(r.port);
  cleanup.push(() => c.sock.terminate());
  for (const part of ["one ", "two ", "three"]) c.sock.write(part);
  c.sock.shutdown();
  // The relay holds the bytes and has read the FIN; only now does it reach the target.
  await r.until(() => r.ends[0]?.data.readEnded === true && r.ends[0].data.earlyBytes === 13);
  expect(r.ends.length).toBe(1);
  gate.resolve();
  await echo.endedCount(1);
  await c.ended;
  expect(c.got().toString()).toBe("one two three");
  expect(echo.ended).toEqual([13]);
});

test("a connection that ends without FIN cuts its peer; cut() ends both at once", async () => {
  const echo = new EchoTarget();
  cleanup.push(() => echo.stop());
  const r = relay(echo.port);
  const c = await client(r.port);
  c.sock.write("x");
  await r.until(() => r.ends.length === 2);
  await echo.changes.until(() => echo.conns.size === 1);
  c.sock.terminate();
  await echo.changes.until(() => echo.conns.size === 0);
  await r.until(() => r.closes.length === 2);
  expect(r.closes.map((x) => x.clean)).toEqual([false, false]);

  // cut(): a second stream, ended from the relay's side, takes both sockets.
  const c2 = await client(r.port);
  c2.sock.write("y");
  await r.until(() => r.ends.length === 4);
  cut(r.ends[2]!);
  await c2.closed;
  await r.until(() => r.closes.length === 4);
  expect(r.ends[2]!.data.closed && r.ends[3]!.data.closed).toBe(true);
});
