// The stream hot path on Bun's native sockets: one handler set that copies bytes between two paired
// sockets with backpressure (a reader pauses while its peer's kernel buffer is full; at most one
// chunk waits in memory per direction), forwards a half-close, and cuts the pair on any other close.
// Measured in Bun 1.4.4 on the 2-core bench machine: the same stream over node:net/node:tls cost about
// 2x the CPU per stream, and a full mutual TLS handshake took ~5 ms (node:tls) against ~0.9 ms (native).
import type { Socket, SocketHandler } from "bun";

/** Most bytes a socket may deliver before it has a peer (a client talking before the tunnel is up). */
export const MAX_EARLY_BYTES = 1 << 20;

export interface End {
  peer: Socket<End> | undefined;
  /** Bytes read before pairing, in order; the socket is paused once they pass MAX_EARLY_BYTES. */
  early: Uint8Array[];
  earlyBytes: number;
  /** Bytes this socket's kernel buffer did not take yet; its peer is paused until they drain. */
  pending: Uint8Array | undefined;
  /** Send FIN on this socket as soon as `pending` has drained (the peer half-closed). */
  endAfterDrain: boolean;
  /** FIN received on this socket, and FIN sent on it. */
  readEnded: boolean;
  writeEnded: boolean;
  closed: boolean;
  /** Bytes read from this socket (the coordinator's per-stream counts). */
  bytesRead: number;
  /**
   * TLS client only: where this session keeps its latest ticket. Offered when the socket opens and
   * replaced from the first bytes received (a TLS 1.3 ticket arrives just after the handshake).
   */
  resume?: { ticket?: Buffer };
  ticketTaken?: boolean;
  /** Set by the owner: TLS handshake outcome (TLS sockets) and close notification. */
  onHandshake?: (s: Socket<End>, ok: boolean, err: Error | null) => void;
  onClose?: (s: Socket<End>, clean: boolean) => void;
  /** FIN received while this is set (a guest's ready spare: its far end never half-closes one, so it is dead). */
  onReadEnd?: (s: Socket<End>) => void;
  /** Instead of a peer socket, a node Duplex takes this socket's bytes (a shell, stdin/stdout): see asDuplex. */
  sink?: SocketSink;
  /**
   * A guest's local connection on a spare it just put to work, until the host's side first answers: what
   * the local client sent, kept (bounded) so that it can go again on a new stream should the coordinator
   * turn the spare's use down (the spare was retired meanwhile, so nothing of it reached the target).
   */
  replay?: { chunks: Uint8Array[]; bytes: number };
  /** Set with `replay`: the peer went before it answered; the owner takes this socket over (unpaired). */
  onPeerLost?: (s: Socket<End>) => void;
  /**
   * Set with `replay`: the peer half-closed before it answered. The pair stands (a target may stop writing
   * and go on reading); the FIN reaches this socket only once the owner calls endWrite.
   */
  onPeerEnded?: (s: Socket<End>) => void;
}

/** What a socket hands its events to when a node stream, not another socket, is on the other side. */
export interface SocketSink {
  feed(chunk: Uint8Array): void;
  drained(): void;
  ended(): void;
  gone(clean: boolean): void;
}

export function newEnd(init: Partial<End> = {}): End {
  return {
    peer: undefined,
    early: [],
    earlyBytes: 0,
    pending: undefined,
    endAfterDrain: false,
    readEnded: false,
    writeEnded: false,
    closed: false,
    bytesRead: 0,
    ...init,
  };
}

/** Pairs two sockets: whatever each read before is delivered, then bytes flow both ways. */
export function pair(a: Socket<End>, b: Socket<End>): void {
  if (a.data.closed || b.data.closed) {
    cut(a);
    cut(b);
    return;
  }
  a.data.peer = b;
  b.data.peer = a;
  for (const [from, to] of [
    [a, b],
    [b, a],
  ] as const) {
    const early = from.data.early;
    from.data.early = [];
    from.data.earlyBytes = 0;
    for (const chunk of early) forward(from, to, chunk);
    if (from.data.readEnded) finishWrite(to);
  }
  if (!b.data.pending) a.resume();
  if (!a.data.pending) b.resume();
}

/** Ends both sockets of a pair at once, dropping what is in flight (revoke, session end, errors). */
export function cut(s: Socket<End>): void {
  const peer = s.data.peer;
  if (!s.data.closed) s.terminate();
  if (peer && !peer.data.closed) peer.terminate();
}

/**
 * `s`'s peer holds a replay (see End.replay): the two are unpaired and the peer's owner takes it over,
 * so a spare retired under a guest's feet costs the local client nothing. False when there is no replay.
 */
function peerLost(s: Socket<End>): boolean {
  const peer = s.data.peer;
  const take = peer?.data.onPeerLost;
  if (!peer?.data.replay || !take) return false;
  s.data.peer = undefined;
  peer.data.peer = undefined;
  peer.data.onPeerLost = undefined;
  peer.data.onPeerEnded = undefined;
  take(peer);
  return true;
}

/** Sends FIN on `s` once what it holds has drained (as a peer's half-close does). */
export function endWrite(s: Socket<End>): void {
  finishWrite(s);
}

function keepForReplay(s: Socket<End>, chunk: Uint8Array): void {
  const r = s.data.replay!;
  r.bytes += chunk.length;
  // Past the bound there is no going again: the stream is then as any other.
  if (r.bytes > MAX_EARLY_BYTES) s.data.replay = undefined;
  else r.chunks.push(chunk); // Bun never reuses a data callback's buffer (see forward)
}

function forward(from: Socket<End>, to: Socket<End>, chunk: Uint8Array): void {
  if (to.data.pending) {
    // Only reachable for bytes already read when the pause took effect: keep order, copy.
    to.data.pending = Buffer.concat([to.data.pending, chunk]);
    from.pause();
    return;
  }
  const n = to.write(chunk);
  if (n < 0) return void (peerLost(to) || cut(from));
  if (n < chunk.length) {
    // Bun hands every data callback a buffer of its own (measured in 1.4.4, TCP and TLS: never reused
    // afterwards), so the unwritten tail is kept as a view, not copied: under backpressure a copy here
    // cost up to one extra memcpy per byte per hop.
    to.data.pending = chunk.subarray(n);
    from.pause();
  }
}

function finishWrite(s: Socket<End>): void {
  if (s.data.writeEnded || s.data.closed) return;
  if (s.data.pending) {
    s.data.endAfterDrain = true;
    return;
  }
  s.data.writeEnded = true;
  // shutdown() half-closes (end() on a native TLS socket closes both directions); once both
  // directions are done, end() lets the socket close (a half-open Bun socket never closes by itself).
  if (s.data.readEnded) s.end();
  else s.shutdown();
}

export const PIPE_HANDLERS: SocketHandler<End> = {
  open(s) {
    const ticket = s.data?.resume?.ticket;
    if (ticket) s.setSession(ticket);
  },
  data(s, chunk) {
    if (s.data.resume && !s.data.ticketTaken) {
      s.data.ticketTaken = true;
      const ticket = s.getSession() as unknown as Buffer | undefined;
      if (ticket) s.data.resume.ticket = ticket;
    }
    s.data.bytesRead += chunk.length;
    if (s.data.sink) return s.data.sink.feed(chunk);
    if (s.data.replay) keepForReplay(s, chunk);
    const peer = s.data.peer;
    if (peer?.data.replay) {
      // The host's side answered: the spare was put to work, and its bytes are not to be sent again.
      peer.data.replay = undefined;
      peer.data.onPeerLost = undefined;
      peer.data.onPeerEnded = undefined;
    }
    if (peer) return forward(s, peer, chunk);
    s.data.early.push(Buffer.from(chunk));
    s.data.earlyBytes += chunk.length;
    if (s.data.earlyBytes >= MAX_EARLY_BYTES) s.pause();
  },
  drain(s) {
    if (s.data.sink) return s.data.sink.drained();
    const p = s.data.pending;
    if (!p) return;
    const n = s.write(p);
    if (n < 0) return cut(s);
    if (n < p.length) {
      s.data.pending = p.subarray(n);
      return;
    }
    s.data.pending = undefined;
    if (s.data.endAfterDrain) finishWrite(s);
    const peer = s.data.peer;
    if (peer && !peer.data.readEnded) peer.resume();
  },
  end(s) {
    s.data.readEnded = true;
    if (s.data.onReadEnd) return s.data.onReadEnd(s);
    if (s.data.sink) return s.data.sink.ended();
    const peer = s.data.peer;
    const ended = peer?.data.replay ? peer.data.onPeerEnded : undefined;
    if (ended) {
      peer!.data.onPeerEnded = undefined;
      ended(peer!);
    } else if (peer) finishWrite(peer);
    if (s.data.writeEnded) s.end();
  },
  handshake(s, ok, err) {
    s.data.onHandshake?.(s, ok, err);
  },
  close(s, err) {
    s.data.closed = true;
    // Bun may skip `end` when FIN arrives after we sent ours and close at once: a close without an
    // error after either side's FIN is an orderly end, and the peer's write side ends once drained.
    // Anything else (an error, a reset before any FIN) cuts the peer.
    const clean = !err && (s.data.readEnded || s.data.writeEnded);
    s.data.sink?.gone(clean);
    const peer = s.data.peer;
    if (peer && !peer.data.closed && !peerLost(s)) {
      if (clean) finishWrite(peer);
      else peer.terminate();
    }
    s.data.onClose?.(s, clean);
  },
  error() {
    // A close always follows; it decides what happens to the peer.
  },
};
