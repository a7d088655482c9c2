// A native socket joined to one stream of a data channel: a guest's local connection, or the agent's
// connection to its target. Backpressure both ways (the socket pauses while the stream's window or the
// channel's buffer is full; bytes the socket's kernel buffer did not take are not yet "consumed", so
// the peer gets no more window), half-close both ways, and any other close resets the stream.
import type { Socket, SocketHandler } from "bun";
import { MuxReset } from "../wire/mux-frames.ts";
import type { MuxStream } from "./mux-stream.ts";
import { MAX_EARLY_BYTES } from "./pipe.ts";

export interface MuxEnd {
  stream: MuxStream | undefined;
  /** Read before the stream was bound (a client talking before its stream exists). */
  early: Buffer[];
  earlyBytes: number;
  /** Stream bytes this socket's kernel buffer did not take yet. */
  pending: Buffer[];
  endAfterDrain: boolean;
  readEnded: boolean;
  writeEnded: boolean;
  closed: boolean;
  /** The stream's reset reason, when the stream ended it (for the owner's close line). */
  onClose?(clean: boolean): void;
  /**
   * Until the host's side first answers (its target reached): what the local client sent, kept (bounded)
   * so that a stream refused for a reason of the moment can be opened again with it (`again`).
   */
  replay?: { chunks: Buffer[]; bytes: number; again(sock: Socket<MuxEnd>): void };
}

export function newMuxEnd(init: Partial<MuxEnd> = {}): MuxEnd {
  return {
    stream: undefined,
    early: [],
    earlyBytes: 0,
    pending: [],
    endAfterDrain: false,
    readEnded: false,
    writeEnded: false,
    closed: false,
    ...init,
  };
}

/** Joins a socket to its stream; bytes either side already had move first. */
export function bindStream(sock: Socket<MuxEnd>, stream: MuxStream): void {
  const d = sock.data;
  if (d.closed) return stream.reset(MuxReset.cancel);
  d.stream = stream;
  stream.attach({
    ack() {
      d.replay = undefined;
    },
    data(chunk) {
      d.replay = undefined;
      if (d.closed) return stream.reset(MuxReset.cancel);
      if (d.pending.length) {
        d.pending.push(chunk);
        return;
      }
      const n = sock.write(chunk);
      if (n < 0) return stream.reset(MuxReset.cancel);
      stream.consumed(n);
      if (n < chunk.length) d.pending.push(chunk.subarray(n));
    },
    end() {
      finishWrite(sock);
    },
    drain() {
      if (!d.readEnded && !d.closed) sock.resume();
    },
    close(reset) {
      if (d.closed) return;
      const replay = d.replay;
      if (reset && stream.retryable && replay) {
        // Refused before anything reached the target: the client's bytes go again on a new stream, unseen.
        d.stream = undefined;
        d.replay = undefined;
        d.early = replay.chunks;
        d.earlyBytes = replay.bytes;
        return replay.again(sock);
      }
      if (reset) sock.terminate();
      else finishWrite(sock);
    },
  });
  const early = d.early;
  d.early = [];
  d.earlyBytes = 0;
  let more = true;
  for (const c of early) {
    keep(d, c);
    more = stream.write(c) && more;
  }
  if (d.readEnded) stream.end();
  else if (more) sock.resume();
}

/** Keeps a chunk for a replay while one is possible; past the bound there is no going again. */
function keep(d: MuxEnd, chunk: Uint8Array): void {
  const r = d.replay;
  if (!r) return;
  r.bytes += chunk.length;
  if (r.bytes > MAX_EARLY_BYTES) d.replay = undefined;
  else r.chunks.push(chunk as Buffer); // Bun never reuses a data callback's buffer
}

function finishWrite(sock: Socket<MuxEnd>): void {
  const d = sock.data;
  if (d.writeEnded || d.closed) return;
  if (d.pending.length) {
    d.endAfterDrain = true;
    return;
  }
  d.writeEnded = true;
  // shutdown() half-closes; end() once both directions are done (a half-open socket never closes by itself).
  if (d.readEnded) sock.end();
  else sock.shutdown();
}

export const MUX_SOCKET_HANDLERS: SocketHandler<MuxEnd> = {
  open(s) {
    s.setNoDelay(true);
  },
  data(s, chunk) {
    const stream = s.data.stream;
    if (stream) {
      keep(s.data, chunk);
      if (!stream.write(chunk)) s.pause();
      return;
    }
    s.data.early.push(Buffer.from(chunk));
    s.data.earlyBytes += chunk.length;
    if (s.data.earlyBytes >= MAX_EARLY_BYTES) s.pause();
  },
  drain(s) {
    const d = s.data;
    const stream = d.stream;
    while (d.pending.length) {
      const c = d.pending[0]!;
      const n = s.write(c);
      if (n < 0) return stream?.reset(MuxReset.cancel);
      stream?.consumed(n);
      if (n < c.length) {
        d.pending[0] = c.subarray(n);
        return;
      }
      d.pending.shift();
    }
    if (d.endAfterDrain) finishWrite(s);
  },
  end(s) {
    s.data.readEnded = true;
    s.data.stream?.end();
    if (s.data.writeEnded) s.end();
  },
  close(s, err) {
    const d = s.data;
    d.closed = true;
    const clean = !err && (d.readEnded || d.writeEnded);
    const stream = d.stream;
    if (stream && !stream.closed) {
      if (clean) stream.end();
      else stream.reset(MuxReset.cancel);
    }
    d.onClose?.(clean);
  },
  error() {
    // A close always follows; it decides what happens to the stream.
  },
};
