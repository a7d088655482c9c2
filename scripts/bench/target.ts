// Benchmark target: the "host's service" every path forwards to, run as its own process so it never
// shares an event loop with the client. The first byte of a connection picks its job:
//   'E' echo every later byte back;  'S' send bytes as fast as the peer reads them until it leaves.
// Prints "port N" once bound. Usage: bun scripts/bench/target.ts
import type { Socket } from "bun";

const CHUNK = Buffer.alloc(256 * 1024, 0x5a);

interface State {
  mode: 0 | 0x45 | 0x53;
  /** Bytes still to write (echo backlog, or the unsent tail of CHUNK). */
  pending: Uint8Array | undefined;
}

function pump(s: Socket<State>): void {
  // Source mode: keep the kernel buffer full; resume from drain when it is.
  for (;;) {
    const buf = s.data.pending ?? CHUNK;
    const n = s.write(buf);
    if (n < buf.length) {
      s.data.pending = buf.subarray(Math.max(n, 0));
      return;
    }
    s.data.pending = undefined;
  }
}

function echo(s: Socket<State>, bytes: Uint8Array): void {
  if (s.data.pending) {
    // Already backed up: keep order, copy (rare; only when the peer is not reading).
    s.data.pending = Buffer.concat([s.data.pending, bytes]);
    return;
  }
  const n = s.write(bytes);
  if (n < bytes.length) s.data.pending = Buffer.from(bytes.subarray(Math.max(n, 0)));
}

const server = Bun.listen<State>({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(s) {
      s.data = { mode: 0, pending: undefined };
      s.setNoDelay(true);
    },
    data(s, chunk) {
      if (s.data.mode === 0) {
        const m = chunk[0];
        if (m !== 0x45 && m !== 0x53) return void s.end();
        s.data.mode = m;
        chunk = chunk.subarray(1);
        if (m === 0x53) return pump(s);
      }
      if (s.data.mode === 0x45 && chunk.length) echo(s, chunk);
    },
    drain(s) {
      if (s.data.mode === 0x53) return pump(s);
      const p = s.data.pending;
      if (!p) return;
      s.data.pending = undefined;
      echo(s, p);
    },
    end(s) {
      s.end();
    },
    error() {},
  },
});

console.log(`port ${server.port}`);
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
