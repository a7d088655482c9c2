// A data channel over a real loopback TCP connection, both ends in this process: the opener (guest's
// side) and the acceptor (agent's side), each a MuxChannel on its own socket.
import type { Socket, TCPSocketListener } from "bun";
import { CHANNEL_HANDLERS, socketTransport, type ChannelEnd } from "./mux-connection.ts";
import { MuxChannel, type MuxLimits, type MuxOptions } from "../../src/data/mux.ts";

export interface ChannelPair {
  opener: MuxChannel;
  acceptor: MuxChannel;
  openerSock: Socket<ChannelEnd>;
  acceptorSock: Socket<ChannelEnd>;
  /** Resolve when each side's channel closes (with its error, if any). */
  openerClosed: Promise<Error | undefined>;
  acceptorClosed: Promise<Error | undefined>;
  /** Resolves once neither side has a stream left. */
  streamsGone(): Promise<void>;
  stop(): void;
}

export async function channelPair(
  opts: { limits?: Partial<MuxLimits>; onHeld?: MuxOptions["onHeld"] } = {},
): Promise<ChannelPair> {
  let acceptorSock!: Socket<ChannelEnd>;
  let opener!: MuxChannel;
  let acceptor!: MuxChannel;
  let acceptorClosed!: Promise<Error | undefined>;
  const gone: (() => void)[] = [];
  const check = () => {
    if (opener.streamCount + acceptor.streamCount === 0) for (const g of gone.splice(0)) g();
  };
  const accepted = Promise.withResolvers<void>();
  const listener: TCPSocketListener<ChannelEnd> = Bun.listen<ChannelEnd>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      ...CHANNEL_HANDLERS,
      open(s) {
        const closed = Promise.withResolvers<Error | undefined>();
        acceptorClosed = closed.promise;
        acceptor = new MuxChannel(socketTransport(s), {
          role: "acceptor",
          limits: opts.limits,
          onHeld: opts.onHeld,
          onStreamClose: check,
          onClose: (err) => closed.resolve(err),
        });
        s.data = { mux: acceptor };
        acceptorSock = s;
        accepted.resolve();
      },
    },
  });
  const closed = Promise.withResolvers<Error | undefined>();
  const openerSock = await Bun.connect<ChannelEnd>({
    hostname: "127.0.0.1",
    port: listener.port,
    allowHalfOpen: true,
    data: { mux: undefined },
    socket: CHANNEL_HANDLERS,
  });
  opener = new MuxChannel(socketTransport(openerSock), {
    role: "opener",
    limits: opts.limits,
    onStreamClose: check,
    onClose: (err) => closed.resolve(err),
  });
  openerSock.data.mux = opener;
  await accepted.promise;
  return {
    opener,
    acceptor,
    openerSock,
    acceptorSock,
    openerClosed: closed.promise,
    acceptorClosed,
    streamsGone: () =>
      new Promise<void>((r) => {
        gone.push(r);
        check();
      }),
    stop() {
      openerSock.terminate();
      acceptorSock.terminate();
      listener.stop(true);
    },
  };
}

/** Collects a stream's bytes until its peer half-closes, consuming them as they come. */
export function collect(s: import("../../src/data/mux-stream.ts").MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) =>
    s.attach({
      data(c) {
        chunks.push(Buffer.from(c));
        s.consumed(c.length);
      },
      end: () => resolve(Buffer.concat(chunks)),
      drain() {},
      close(reset) {
        if (reset) reject(new Error(`stream ${s.id} reset (${reset.reason})`));
      },
    }),
  );
}
