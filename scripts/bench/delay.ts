// Benchmark link with latency: a loopback TCP forwarder that delivers every byte a fixed delay after
// it arrived, each way, so the delayed-link path sees round trips as a real network would.
// A new connection also pays TCP's handshake: bytes from the dialler leave only once its SYN-ACK
// would have come back (accept + 2 x delay), then take the one-way delay. Bounded: a direction with
// more than MAX_QUEUED bytes in flight pauses its reader. Loopback only.
// Prints "port N" once bound. Usage: bun scripts/bench/delay.ts --to PORT --delay MS
import type { Socket } from "bun";
import { parseArgs } from "node:util";

const { values: a } = parseArgs({ options: { to: { type: "string" }, delay: { type: "string", default: "10" } } });
const TO = Number(a.to);
const DELAY = Number(a.delay);
if (!Number.isInteger(TO) || TO <= 0 || !(DELAY >= 0)) throw new Error("usage: delay.ts --to PORT --delay MS");
const MAX_QUEUED = 1 << 20;

/** One direction of a forwarded connection: chunks waiting for their time, in arrival order. */
class Lane {
  /** A chunk, or the far end's FIN ("fin") or close ("close"), each delivered in order. */
  queue: { due: number; chunk: Uint8Array | "fin" | "close" }[] = [];
  queued = 0;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** What the writable side did not take yet; nothing more is written until it drains. */
  pending: Uint8Array | undefined;
  out: Socket<Side> | undefined;
  from: Socket<Side> | undefined;
  notBefore = 0;

  push(chunk: Uint8Array | "fin" | "close"): void {
    const due = Math.max(performance.now(), this.notBefore) + DELAY;
    this.queue.push({ due, chunk: typeof chunk === "string" ? chunk : Buffer.from(chunk) });
    if (typeof chunk !== "string") this.queued += chunk.length;
    if (this.queued > MAX_QUEUED) this.from?.pause();
    this.arm();
  }

  arm(): void {
    if (this.timer || this.pending || !this.out || !this.queue.length) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.flush();
      },
      Math.max(0, this.queue[0]!.due - performance.now()),
    );
  }

  flush(): void {
    const out = this.out;
    if (!out) return;
    const now = performance.now();
    while (!this.pending && this.queue.length && this.queue[0]!.due <= now + 0.5) {
      const { chunk } = this.queue.shift()!;
      if (chunk === "fin") {
        out.shutdown();
        continue;
      }
      if (chunk === "close") {
        out.end();
        continue;
      }
      this.queued -= chunk.length;
      const n = out.write(chunk);
      if (n < chunk.length) this.pending = chunk.subarray(Math.max(0, n));
    }
    if (this.queued <= MAX_QUEUED) this.from?.resume();
    this.arm();
  }

  drained(): void {
    const p = this.pending;
    if (!p || !this.out) return;
    const n = this.out.write(p);
    this.pending = n < p.length ? p.subarray(Math.max(0, n)) : undefined;
    if (!this.pending) this.flush();
  }
}

interface Side {
  /** Bytes read from this socket travel on `lane`; bytes written to it come from `back`. */
  lane: Lane;
  back: Lane;
  other?: Socket<Side>;
}

const handlers = {
  data(s: Socket<Side>, chunk: Uint8Array) {
    s.data.lane.push(chunk);
  },
  drain(s: Socket<Side>) {
    s.data.back.drained();
  },
  end(s: Socket<Side>) {
    s.data.lane.push("fin");
  },
  // The other side learns of a close one delay later, after what was already on its way.
  close(s: Socket<Side>) {
    s.data.lane.push("close");
  },
  error() {},
};

const server = Bun.listen<Side>({
  hostname: "127.0.0.1",
  port: 0,
  allowHalfOpen: true,
  socket: {
    ...handlers,
    open(s) {
      s.setNoDelay(true);
      const up = new Lane();
      const down = new Lane();
      up.from = s;
      up.notBefore = performance.now() + 2 * DELAY;
      s.data = { lane: up, back: down };
      // The SYN reaches the far side one delay after the dialler sent it.
      setTimeout(() => {
        Bun.connect<Side>({
          hostname: "127.0.0.1",
          port: TO,
          allowHalfOpen: true,
          data: { lane: down, back: up, other: s },
          socket: {
            ...handlers,
            open(u) {
              u.setNoDelay(true);
            },
          },
        }).then(
          (u) => {
            s.data.other = u;
            down.from = u;
            down.out = s;
            up.out = u;
            up.arm();
          },
          () => s.terminate(),
        );
      }, DELAY);
    },
  },
});

console.log(`port ${server.port}`);
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
