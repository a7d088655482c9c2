// The one measuring client used for every path (direct, ssh -L, tessera): native Bun sockets so the
// client itself is never the bottleneck. Speaks the target's one-byte modes (see target.ts).
import type { Socket } from "bun";

const HOST = "127.0.0.1";
const ECHO = 0x45;
const SOURCE = 0x53;

interface Conn {
  bytes: number;
  onData?: (chunk: Buffer) => void;
  closed: boolean;
}

function connect(port: number, onData?: (chunk: Buffer) => void): Promise<Socket<Conn>> {
  return Bun.connect<Conn>({
    hostname: HOST,
    port,
    data: { bytes: 0, onData, closed: false },
    socket: {
      open(s) {
        s.setNoDelay(true);
      },
      data(s, chunk) {
        s.data.bytes += chunk.length;
        s.data.onData?.(chunk);
      },
      close(s) {
        s.data.closed = true;
      },
      error() {},
    },
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout>;
  return Promise.race([
    p,
    new Promise<T>((_, rej) => {
      t = setTimeout(() => rej(new Error(`${what}: no answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/**
 * Bulk throughput, target to client, over `streams` parallel connections: after every stream has
 * delivered its first byte and a warm-up, counts the bytes of all streams over `durationMs`. MB/s (10^6).
 */
export async function throughput(port: number, streams: number, durationMs: number, warmupMs = 300): Promise<number> {
  const firsts: Promise<void>[] = [];
  const socks: Socket<Conn>[] = [];
  try {
    for (let i = 0; i < streams; i++) {
      let first!: () => void;
      firsts.push(new Promise<void>((r) => (first = r)));
      let seen = false;
      const s = await connect(port, () => {
        if (!seen) {
          seen = true;
          first();
        }
      });
      socks.push(s);
      s.write(new Uint8Array([SOURCE]));
    }
    await withTimeout(Promise.all(firsts), 15_000, "throughput: first bytes");
    await Bun.sleep(warmupMs);
    const total = () => socks.reduce((a, s) => a + s.data.bytes, 0);
    const b0 = total();
    const t0 = performance.now();
    await Bun.sleep(durationMs);
    const bytes = total() - b0;
    const secs = (performance.now() - t0) / 1000;
    if (socks.some((s) => s.data.closed)) throw new Error("throughput: a stream closed early");
    return bytes / secs / 1e6;
  } finally {
    for (const s of socks) s.terminate();
  }
}

/** Time from connect() to the first echoed byte, over `n` sequential fresh connections; ms each. */
export async function setupTimes(port: number, n: number, gapMs = 0): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (gapMs) await Bun.sleep(gapMs);
    let echoed!: () => void;
    const got = new Promise<void>((r) => (echoed = r));
    const t0 = performance.now();
    const s = await withTimeout(
      connect(port, () => echoed()),
      10_000,
      "setup: connect",
    );
    s.write(new Uint8Array([ECHO, 0x78]));
    await withTimeout(got, 10_000, "setup: first echoed byte");
    out.push(performance.now() - t0);
    s.end();
  }
  return out;
}

/** Round trips of a `size`-byte message over one open connection, `n` times after a warm-up; ms each. */
export async function roundTrips(port: number, n: number, size = 64, warmup = 100): Promise<number[]> {
  let want = 0;
  let have = 0;
  let wake: (() => void) | undefined;
  const s = await connect(port, (c) => {
    have += c.length;
    if (wake && have >= want) {
      const w = wake;
      wake = undefined;
      w();
    }
  });
  try {
    s.write(new Uint8Array([ECHO]));
    const msg = Buffer.alloc(size, 0x61);
    const out: number[] = [];
    for (let i = 0; i < warmup + n; i++) {
      want += size;
      const done = new Promise<void>((r) => (wake = r));
      const t0 = performance.now();
      s.write(msg);
      if (have < want) await withTimeout(done, 10_000, "round trip");
      else wake = undefined;
      if (i >= warmup) out.push(performance.now() - t0);
    }
    return out;
  } finally {
    s.end();
  }
}

/**
 * Opens `count` streams, `parallel` at a time, each proven live by one echoed byte, and keeps them
 * open. Returns a closer. Throws if any stream fails to open.
 */
export async function openIdle(port: number, count: number, parallel = 50): Promise<{ close(): void; open: number }> {
  const socks: Socket<Conn>[] = [];
  let next = 0;
  const one = async () => {
    while (next < count) {
      next++;
      let echoed!: () => void;
      const got = new Promise<void>((r) => (echoed = r));
      const s = await withTimeout(
        connect(port, () => echoed()),
        15_000,
        "idle: connect",
      );
      socks.push(s);
      s.write(new Uint8Array([ECHO, 0x78]));
      await withTimeout(got, 15_000, "idle: first echoed byte");
    }
  };
  const close = () => {
    for (const s of socks) s.terminate();
  };
  try {
    await Promise.all(Array.from({ length: parallel }, one));
  } catch (err) {
    close();
    throw err;
  }
  if (socks.some((s) => s.data.closed)) {
    close();
    throw new Error("idle: a stream closed while the others opened");
  }
  return { close, open: socks.length };
}

/** Request sizes of the request/response workload: a fixed spread over 64 B..1 KiB (mean ~544 B). */
export const reqSize = (i: number) => 64 + ((i * 397) % 961);

/**
 * Cache-style load: `conns` connections, each keeping `depth` echo requests of 64 B-1 KiB in flight
 * (depth 1: one request, wait for its whole answer, send the next; 16: pipelined). After every
 * connection has answered once and a warm-up, counts completed requests over `durationMs`. Requests/s.
 */
export async function requestResponse(
  port: number,
  conns: number,
  depth: number,
  durationMs: number,
  warmupMs = 300,
  onWindow?: () => (requests: number) => void,
): Promise<number> {
  const socks: Socket<Conn>[] = [];
  let done = 0;
  let seq = 0;
  let running = true;
  const firsts: Promise<void>[] = [];
  try {
    for (let c = 0; c < conns; c++) {
      const inFlight: number[] = [];
      let have = 0;
      let first!: () => void;
      firsts.push(new Promise<void>((r) => (first = r)));
      const send = (s: Socket<Conn>, n: number) => {
        const parts: Buffer[] = [];
        for (let k = 0; k < n; k++) {
          const size = reqSize(seq++);
          inFlight.push(size);
          parts.push(Buffer.alloc(size, 0x61));
        }
        s.write(n === 1 ? parts[0]! : Buffer.concat(parts));
      };
      const s: Socket<Conn> = await withTimeout(
        connect(port, (chunk) => {
          have += chunk.length;
          let answered = 0;
          while (inFlight.length && have >= inFlight[0]!) {
            have -= inFlight.shift()!;
            answered++;
          }
          if (!answered) return;
          done += answered;
          first();
          if (running) send(s, answered);
        }),
        15_000,
        "req/resp: connect",
      );
      socks.push(s);
      s.write(new Uint8Array([ECHO]));
      send(s, depth);
    }
    await withTimeout(Promise.all(firsts), 15_000, "req/resp: first answers");
    await Bun.sleep(warmupMs);
    const windowEnd = onWindow?.();
    const d0 = done;
    const t0 = performance.now();
    await Bun.sleep(durationMs);
    const n = done - d0;
    windowEnd?.(n);
    const secs = (performance.now() - t0) / 1000;
    if (socks.some((s) => s.data.closed)) throw new Error("req/resp: a connection closed early");
    return n / secs;
  } finally {
    running = false;
    for (const s of socks) s.terminate();
  }
}
