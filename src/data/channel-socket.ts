// A data channel over a verified end-to-end TLS socket (a pipe end, see pipe.ts): the socket's bytes feed
// the channel from the moment it is verified (what came before is fed first), its drains release the
// channel's batched writes, and both ends close as TCP would: a FIN after the last frame when either side
// ends it cleanly, a cut only when it broke.
import type { Socket } from "bun";
import { ProtocolError } from "../errors.ts";
import { MuxChannel, type MuxOptions } from "./mux.ts";
import type { End } from "./pipe.ts";

/** `peer`: who the far end is, for the reason its FIN gives ("guest", "host"). */
export function channelOver(inner: Socket<End>, peer: string, o: MuxOptions): MuxChannel {
  // Set once this end is closing cleanly: the socket then finishes with a FIN, never a reset.
  let finishing = false;
  const finish = () => {
    if (finishing) return;
    finishing = true;
    inner.end();
  };
  const mux = new MuxChannel(
    { write: (b) => inner.write(b), close: finish },
    {
      ...o,
      onClose: (err) => {
        if (!finishing && !inner.data.closed) inner.terminate();
        o.onClose?.(err);
      },
    },
  );
  const early = inner.data.early;
  inner.data.early = [];
  inner.data.earlyBytes = 0;
  inner.data.sink = {
    feed: (c) => mux.feed(c),
    drained: () => mux.drained(),
    // A channel is never half-closed: the far end's FIN ends it, and ours answers it.
    ended: () => {
      finish();
      mux.transportClosed(new ProtocolError(`the ${peer} closed the data channel`, "disconnected"));
    },
    gone: () => mux.transportClosed(),
  };
  for (const c of early) mux.feed(c);
  return mux;
}
