// Sockets joined to streams, end to end on loopback: a local client -> the guest's listener -> one data
// channel -> the agent's connection to a real target. Bytes are exact through backpressure and half-close,
// and a channel cut mid-stream closes every socket on both sides.
import { afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import { MUX_SOCKET_HANDLERS, bindStream, newMuxEnd, type MuxEnd } from "../../src/data/mux-socket.ts";
import { channelPair, type ChannelPair } from "./mux-helpers.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** The guest's listener and the agent's dialer around a channel pair, forwarding to `targetPort`. */
async function forward(targetPort: number): Promise<{ port: number; p: ChannelPair }> {
  const p = await channelPair({
    onHeld: (id) => {
      const stream = p.acceptor.accept(id)!;
      void Bun.connect<MuxEnd>({
        hostname: "127.0.0.1",
        port: targetPort,
        allowHalfOpen: true,
        data: newMuxEnd(),
        socket: MUX_SOCKET_HANDLERS,
      }).then((sock) => bindStream(sock, stream));
    },
  });
  let next = 1;
  const listener = Bun.listen<MuxEnd>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      ...MUX_SOCKET_HANDLERS,
      open(s) {
        s.data = newMuxEnd();
        bindStream(s, p.opener.open(next++));
      },
    },
  });
  cleanups.push(() => {
    listener.stop(true);
    p.stop();
  });
  return { port: listener.port, p };
}

function server(onConn: (s: net.Socket) => void): Promise<{ port: number; conns: net.Socket[] }> {
  const conns: net.Socket[] = [];
  const srv = net.createServer((s) => {
    conns.push(s);
    s.on("error", () => {});
    onConn(s);
  });
  cleanups.push(() => {
    for (const c of conns) c.destroy();
    srv.close();
  });
  return new Promise((r) =>
    srv.listen(0, "127.0.0.1", () => r({ port: (srv.address() as net.AddressInfo).port, conns })),
  );
}

describe("sockets over a data channel", () => {
  test("8 MiB each way through an echo target, byte-exact, with half-close", async () => {
    const target = await server((s) => s.pipe(s));
    const { port, p } = await forward(target.port);
    const sent = Buffer.alloc(8 << 20);
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 31 + (i >>> 13)) & 0xff;
    const got = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const c = net.connect(port, "127.0.0.1", () => c.end(sent));
      c.on("data", (d: Buffer) => chunks.push(d));
      c.on("end", () => resolve(Buffer.concat(chunks)));
      c.on("error", reject);
    });
    expect(got.length).toBe(sent.length);
    expect(got.equals(sent)).toBe(true);
    // Both directions ended: the stream is gone on both sides (the guest's end closes once the agent's has).
    await p.streamsGone();
    expect(p.opener.streamCount + p.acceptor.streamCount).toBe(0);
  });

  test("a channel cut mid-stream closes the client's and the target's connections", async () => {
    const targetClosed = Promise.withResolvers<void>();
    // A target that streams without end once asked.
    const target = await server((s) => {
      s.once("data", () => {
        const chunk = Buffer.alloc(65536, 0x5a);
        const pump = () => {
          while (!s.destroyed && s.write(chunk));
        };
        s.on("drain", pump);
        pump();
      });
      s.on("close", () => targetClosed.resolve());
    });
    const { port, p } = await forward(target.port);
    const clientClosed = Promise.withResolvers<number>();
    const midway = Promise.withResolvers<void>();
    let got = 0;
    const c = net.connect(port, "127.0.0.1", () => c.write("go"));
    c.on("data", (d) => {
      got += d.length;
      if (got > 2 << 20) midway.resolve();
    });
    c.on("close", () => clientClosed.resolve(got));
    c.on("error", () => {});
    cleanups.push(() => c.destroy());
    await midway.promise;
    expect(p.opener.streamCount).toBe(1);
    // The network drops the channel's connection.
    p.openerSock.terminate();
    const [openerErr, acceptorErr] = await Promise.all([p.openerClosed, p.acceptorClosed]);
    await clientClosed.promise;
    await targetClosed.promise;
    expect(openerErr).toBeDefined();
    expect(acceptorErr).toBeDefined();
    expect(p.opener.streamCount + p.acceptor.streamCount).toBe(0);
  });
});
