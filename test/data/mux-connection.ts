// The connection under a data channel: a native socket (TCP in tests, end-to-end TLS in a session)
// whose reads feed the channel's decoder and whose drains release its batched writes.
import type { Socket, SocketHandler } from "bun";
import { ProtocolError } from "../../src/errors.ts";
import type { MuxChannel, MuxTransport } from "../../src/data/mux.ts";

export interface ChannelEnd {
  mux: MuxChannel | undefined;
}

/** The channel's writes go to this socket; closing the channel ends it (FIN after what was written). */
export function socketTransport(s: Socket<ChannelEnd>): MuxTransport {
  return {
    write: (b) => s.write(b),
    close: () => s.end(),
  };
}

export const CHANNEL_HANDLERS: SocketHandler<ChannelEnd> = {
  data(s, chunk) {
    s.data.mux?.feed(chunk);
  },
  drain(s) {
    s.data.mux?.drained();
  },
  end(s) {
    // A channel is never half-closed: the peer's FIN ends it.
    s.data.mux?.transportClosed(new ProtocolError("the data channel's peer closed it", "disconnected"));
    s.end();
  },
  close(s, err) {
    s.data.mux?.transportClosed(err ?? undefined);
  },
  error() {
    // A close always follows.
  },
};
