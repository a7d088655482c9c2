// Data plane: pairs the guest's and the agent's raw connections by single-use token and copies
// bytes between them. The bytes are the end-to-end TLS of guest and agent; nothing here can read them.
import type net from "node:net";
import { createHash, randomBytes } from "node:crypto";
import { DATA_MAGIC, PREAMBLE_BYTES, STREAM_TOKEN_BYTES } from "./protocol.ts";

export interface Stream {
  readonly id: string;
  readonly sessionId: string;
  guest?: net.Socket;
  agent?: net.Socket;
  /** Bytes guest → agent and agent → guest. */
  up: number;
  down: number;
  spliced: boolean;
  ended: boolean;
  /** True once the stream's opening is on disk (see create); both halves wait for it. */
  durable: boolean;
}

export interface SpliceEvents {
  onSpliced(s: Stream): void;
  /** Called once per stream, whether it was spliced or expired half-paired. */
  onClosed(s: Stream, reason: string): void;
}

type Side = "guest" | "agent";

export class Splicer {
  private readonly byToken = new Map<string, { stream: Stream; side: Side }>();
  private readonly timers = new Map<Stream, ReturnType<typeof setTimeout>>();

  constructor(private readonly events: SpliceEvents, private readonly tokenTtlMs: number) {}

  /**
   * Creates a stream and its two single-use tokens (base64url); only their hashes are kept.
   * `durable` is the audit record of the opening: no byte crosses the splice before it resolves, so
   * guest and agent can dial while the disk syncs, yet nothing happens that the log does not hold.
   */
  create(id: string, sessionId: string, durable: Promise<void> = Promise.resolve()): { stream: Stream; guestToken: string; agentToken: string } {
    const stream: Stream = { id, sessionId, up: 0, down: 0, spliced: false, ended: false, durable: false };
    durable.then(() => {
      stream.durable = true;
      if (stream.guest && stream.agent && !stream.ended) this.splice(stream);
    }, () => this.end(stream, "the audit log could not record the stream"));
    const guestToken = randomBytes(STREAM_TOKEN_BYTES);
    const agentToken = randomBytes(STREAM_TOKEN_BYTES);
    this.byToken.set(tokenKey(guestToken), { stream, side: "guest" });
    this.byToken.set(tokenKey(agentToken), { stream, side: "agent" });
    this.timers.set(stream, setTimeout(() => this.end(stream, "stream was not picked up in time"), this.tokenTtlMs));
    return { stream, guestToken: guestToken.toString("base64url"), agentToken: agentToken.toString("base64url") };
  }

  /** Takes a connection whose first bytes are a data preamble. Unknown tokens are dropped silently. */
  accept(sock: net.Socket, head: Buffer): void {
    if (head.length < PREAMBLE_BYTES || !head.subarray(0, DATA_MAGIC.length).equals(DATA_MAGIC)) {
      sock.destroy();
      return;
    }
    const key = tokenKey(head.subarray(DATA_MAGIC.length, PREAMBLE_BYTES));
    const entry = this.byToken.get(key);
    if (!entry || entry.stream.ended) {
      sock.destroy();
      return;
    }
    this.byToken.delete(key);
    const { stream, side } = entry;
    const rest = head.subarray(PREAMBLE_BYTES);
    sock.pause();
    if (rest.length) sock.unshift(rest);
    sock.on("error", () => {});
    sock.on("close", () => {
      if (!stream.spliced) this.end(stream, `${side} left before the stream opened`);
    });
    stream[side] = sock;
    if (stream.guest && stream.agent && stream.durable) this.splice(stream);
  }

  /** Cuts a stream now (revoke, session end): both sockets are destroyed, pending bytes dropped. */
  end(stream: Stream, reason: string): void {
    if (stream.ended) return;
    stream.ended = true;
    const t = this.timers.get(stream);
    if (t) clearTimeout(t);
    this.timers.delete(stream);
    for (const [k, e] of this.byToken) if (e.stream === stream) this.byToken.delete(k);
    stream.guest?.destroy();
    stream.agent?.destroy();
    this.events.onClosed(stream, reason);
  }

  private splice(stream: Stream): void {
    const { guest, agent } = stream as Required<Pick<Stream, "guest" | "agent">>;
    clearTimeout(this.timers.get(stream));
    this.timers.delete(stream);
    stream.spliced = true;
    this.events.onSpliced(stream);
    let open = 2;
    const done = (hadError: boolean) => {
      if (hadError) this.end(stream, "connection reset");
      else if (--open === 0) this.end(stream, "closed");
    };
    guest.on("data", (c: Buffer) => { stream.up += c.length; });
    agent.on("data", (c: Buffer) => { stream.down += c.length; });
    // pipe() keeps backpressure (pauses the reader while the writer is full) and forwards a
    // half-close as end(), so each direction finishes on its own.
    guest.pipe(agent);
    agent.pipe(guest);
    guest.on("close", done);
    agent.on("close", done);
    guest.resume();
    agent.resume();
  }
}

function tokenKey(raw: Uint8Array): string {
  // Look up by hash, never by the secret itself, so map probing leaks nothing useful.
  return createHash("sha256").update(raw).digest("base64");
}
