// Data plane: pairs the guest's and the agent's raw connections by single-use token and copies
// bytes between them. The bytes are the end-to-end TLS of guest and agent; nothing here can read them.
import { createHash, randomBytes } from "node:crypto";
import type { Socket } from "bun";
import { cut, pair, type End } from "../data/pipe.ts";
import { STREAM_TOKEN_BYTES } from "../wire/protocol.ts";
import { readPreamble } from "../wire/preamble.ts";
import { metrics } from "./metrics.ts";

export interface Stream {
  readonly id: string;
  readonly sessionId: string;
  guest?: Socket<End>;
  agent?: Socket<End>;
  /** Bytes guest → agent and agent → guest (live counts). */
  readonly up: number;
  readonly down: number;
  spliced: boolean;
  ended: boolean;
  /** True once the stream's opening is on disk (see create); both halves wait for it. */
  durable: boolean;
  /**
   * "channel": a session's data channel (a connection like any stream's, but no stream in the audit log);
   * "mux": a stream inside one, with no connection of its own here (`via` names its channel, `mux` its number).
   */
  kind?: "channel" | "mux";
  /** A channel: the guest's ref for it (told if it ends before it was set up). */
  ref?: string;
  via?: string;
  mux?: number;
  /** On the direct path (direct.ts): no lapse timer, and its byte counts are the agent's report. */
  direct?: boolean;
  reported?: { up: number; down: number };
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

  /** One node of several: takes a connection whose token another node issued (see cluster.ts). */
  forward: ((sock: Socket<End>, head: Buffer) => boolean) | undefined;

  /** `tag`: the first bytes of every token, naming this node to the others. */
  constructor(
    private readonly events: SpliceEvents,
    private readonly tokenTtlMs: number,
    private readonly tag?: Buffer,
  ) {}

  /** Streams waiting for their guest or agent (each holds a lapse timer until paired or ended). */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Creates a stream and its two single-use tokens (base64url); only their hashes are kept.
   * `durable` is the audit record of the opening: no byte crosses the splice before it resolves, so
   * guest and agent can dial while the disk syncs, yet nothing happens that the log does not hold.
   */
  create(
    id: string,
    sessionId: string,
    durable: Promise<void> = Promise.resolve(),
    direct = false,
  ): { stream: Stream; guestToken: string; agentToken: string } {
    const stream: Stream = {
      id,
      sessionId,
      spliced: false,
      ended: false,
      durable: false,
      direct,
      get up() {
        return this.guest?.data.bytesRead ?? this.reported?.up ?? 0;
      },
      get down() {
        return this.agent?.data.bytesRead ?? this.reported?.down ?? 0;
      },
    };
    durable.then(
      () => {
        stream.durable = true;
        if (stream.guest && stream.agent && !stream.ended) this.splice(stream);
      },
      () => this.end(stream, "the audit log could not record the stream"),
    );
    const guestToken = this.token();
    const agentToken = this.token();
    this.byToken.set(tokenKey(guestToken), { stream, side: "guest" });
    this.byToken.set(tokenKey(agentToken), { stream, side: "agent" });
    // A direct stream's relay tokens wait, unarmed, for a fallback (direct.ts bounds it instead).
    if (!direct) this.lapse(stream);
    return { stream, guestToken: guestToken.toString("base64url"), agentToken: agentToken.toString("base64url") };
  }

  /**
   * A stream inside a data channel: no token, no connection here; its bytes are the agent's reports
   * (direct.ts), and it ends by the agent's word or with its session.
   */
  reported(id: string, sessionId: string, m: { via: string; id: number; direct: boolean }): Stream {
    return {
      id,
      sessionId,
      kind: "mux",
      via: m.via,
      mux: m.id,
      spliced: true,
      ended: false,
      durable: true,
      direct: m.direct,
      get up() {
        return this.reported?.up ?? 0;
      },
      get down() {
        return this.reported?.down ?? 0;
      },
    };
  }

  /**
   * Takes a connection whose first bytes are a data preamble (a pipe end: see pipe.ts). Unknown tokens
   * are dropped silently. Bytes after the preamble wait in the socket's early buffer until the splice.
   */
  accept(sock: Socket<End>, head: Buffer): void {
    let preamble: ReturnType<typeof readPreamble>;
    try {
      preamble = readPreamble(head);
    } catch {
      preamble = undefined;
    }
    if (!preamble) {
      sock.terminate();
      return;
    }
    const key = tokenKey(preamble.token);
    const entry = this.byToken.get(key);
    if (!entry && this.forward?.(sock, head)) return;
    if (!entry || entry.stream.ended) {
      sock.terminate();
      return;
    }
    this.byToken.delete(key);
    const { stream, side } = entry;
    const { rest } = preamble;
    if (rest.length) {
      sock.data.early.push(Buffer.from(rest));
      sock.data.earlyBytes += rest.length;
    }
    sock.data.bytesRead = rest.length;
    sock.data.onClose = (_s, clean) => {
      if (!stream.spliced) this.end(stream, `${side} left before the stream opened`);
      else if (!clean) this.end(stream, "connection reset");
      else if (stream.guest?.data.closed && stream.agent?.data.closed) this.end(stream, "closed");
    };
    stream[side] = sock;
    if (stream.guest && stream.agent && stream.durable) this.splice(stream);
  }

  /** A direct stream falls back: its tokens, issued at its opening, now have the usual time to be used. */
  relay(stream: Stream): void {
    stream.direct = false;
    if (!stream.ended) this.lapse(stream);
  }

  private lapse(stream: Stream): void {
    this.timers.set(
      stream,
      setTimeout(() => this.end(stream, "stream was not picked up in time"), this.tokenTtlMs),
    );
  }

  /** Cuts a stream now (revoke, session end): both sockets are closed, pending bytes dropped. */
  end(stream: Stream, reason: string): void {
    if (stream.ended) return;
    stream.ended = true;
    const t = this.timers.get(stream);
    if (t) clearTimeout(t);
    this.timers.delete(stream);
    for (const [k, e] of this.byToken) if (e.stream === stream) this.byToken.delete(k);
    if (stream.guest) cut(stream.guest);
    if (stream.agent) cut(stream.agent);
    // Counted once a stream ends: nothing is added per chunk on the hot path. A channel's own count is
    // left out (its streams' reported bytes are counted at their close lines: sessions.ts), so the counter
    // stays the sum of the audit log's stream.close lines.
    if (stream.kind !== "channel") {
      metrics.bytesRelayed.inc(stream.guest?.data.bytesRead ?? 0, { direction: "guest_to_agent" });
      metrics.bytesRelayed.inc(stream.agent?.data.bytesRead ?? 0, { direction: "agent_to_guest" });
    }
    this.events.onClosed(stream, reason);
  }

  private token(): Buffer {
    const t = randomBytes(STREAM_TOKEN_BYTES);
    this.tag?.copy(t);
    return t;
  }

  private splice(stream: Stream): void {
    const { guest, agent } = stream as Required<Pick<Stream, "guest" | "agent">>;
    clearTimeout(this.timers.get(stream));
    this.timers.delete(stream);
    stream.spliced = true;
    this.events.onSpliced(stream);
    // pair() keeps backpressure (a reader pauses while its peer is full) and forwards a half-close,
    // so each direction finishes on its own.
    pair(guest, agent);
  }
}

function tokenKey(raw: Uint8Array): string {
  // Look up by hash, never by the secret itself, so map probing leaks nothing useful.
  return createHash("sha256").update(raw).digest("base64");
}
