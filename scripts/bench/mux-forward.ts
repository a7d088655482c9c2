// A measuring prototype of issue 29's data channel, run before the sessions use it: two processes, a
// "guest" forwarding a local port and an "agent" reaching the target, joined by ONE TLS 1.3 connection
// with every stream multiplexed inside (src/data/mux.ts). No coordinator, no control plane: the agent
// admits a stream on its first frame, as it would once the coordinator's word came. It shows what the
// channel itself costs and buys against ssh -L on the same machine; it is not the product.
// Usage: bun scripts/bench/mux-forward.ts agent --target PORT --cert C --key K   (prints "port N")
//        bun scripts/bench/mux-forward.ts guest --agent PORT --ca C               (prints "port N")
import type { Socket } from "bun";
import { parseArgs } from "node:util";
import fs from "node:fs";
import { CHANNEL_HANDLERS, socketTransport, type ChannelEnd } from "../../src/data/mux-connection.ts";
import { MUX_SOCKET_HANDLERS, bindStream, newMuxEnd, type MuxEnd } from "../../src/data/mux-socket.ts";
import { MuxChannel } from "../../src/data/mux.ts";
import { TLS_1_3 } from "../../src/data/data-dial.ts";

// TESSERA_MUX_WINDOW: each stream's window in bytes, to try sizes (both processes read it, so they agree).
const window = Number(process.env.TESSERA_MUX_WINDOW) || undefined;
const limits = window ? { window } : undefined;

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: "string" },
    agent: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    ca: { type: "string" },
  },
});

// Exit on a signal through process.exit, so a CPU profile (BUN_OPTIONS=--cpu-prof) gets written.
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(0));

if (positionals[0] === "agent") {
  const target = Number(a.target);
  const server = Bun.listen<ChannelEnd>({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: fs.readFileSync(a.cert!, "utf8"), key: fs.readFileSync(a.key!, "utf8"), minVersion: TLS_1_3 } as never,
    socket: {
      ...CHANNEL_HANDLERS,
      open(s) {
        s.setNoDelay(true);
        const mux: MuxChannel = new MuxChannel(socketTransport(s), {
          role: "acceptor",
          limits,
          onHeld: (id) => {
            const stream = mux.accept(id)!;
            void Bun.connect<MuxEnd>({
              hostname: "127.0.0.1",
              port: target,
              allowHalfOpen: true,
              data: newMuxEnd(),
              socket: MUX_SOCKET_HANDLERS,
            }).then(
              (sock) => {
                bindStream(sock, stream);
                stream.ack();
              },
              () => mux.refuse(id),
            );
          },
        });
        s.data = { mux };
      },
    },
  });
  console.log(`port ${server.port}`);
} else if (positionals[0] === "guest") {
  const sock: Socket<ChannelEnd> = await Bun.connect<ChannelEnd>({
    hostname: "127.0.0.1",
    port: Number(a.agent),
    tls: { ca: fs.readFileSync(a.ca!, "utf8"), serverName: "localhost", minVersion: TLS_1_3 } as never,
    data: { mux: undefined },
    socket: CHANNEL_HANDLERS,
  });
  sock.setNoDelay(true);
  const mux = new MuxChannel(socketTransport(sock), {
    role: "opener",
    limits,
    onClose: () => process.exit(1),
  });
  sock.data.mux = mux;
  let next = 1;
  const local = Bun.listen<MuxEnd>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      ...MUX_SOCKET_HANDLERS,
      open(s) {
        s.setNoDelay(true);
        s.data = newMuxEnd();
        bindStream(s, mux.open(next++));
      },
    },
  });
  console.log(`port ${local.port}`);
} else {
  console.error("usage: mux-forward.ts agent|guest ...");
  process.exit(2);
}
