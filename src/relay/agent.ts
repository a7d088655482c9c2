// The host's agent: keeps a control connection to the coordinator, and for each approved stream
// dials the coordinator's data plane, terminates the guest's end-to-end TLS and pipes to the target.
import type { Socket } from "bun";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { ControlClient, type DialOptions } from "./client.ts";
import { dialDataNative, peerKeyIs, TLS_1_3, type InnerTls } from "./data-dial.ts";
import { cut, newEnd, pair, PIPE_HANDLERS, type End } from "./pipe.ts";
import type { TargetPolicy } from "./policy.ts";
import type { FrameOf, ServerFrame } from "./protocol.ts";

const log = logger("agent");

export interface AgentOptions extends Required<Pick<DialOptions, "address" | "caPem" | "keyPem" | "certPem" | "version">> {
  shareId: string;
  policy: TargetPolicy;
  /** Also approve requests on this connection (the embedded agent of `tessera share --port`). */
  approver: boolean;
  /** Keep reconnecting (standalone agent) rather than fail on the first disconnect. */
  reconnect: boolean;
}

interface AgentSession {
  frame: FrameOf<ServerFrame, "session">;
  /** Every live socket of the session's streams, so a session's end cuts them all at once. */
  streams: Set<Socket<End>>;
  /** The guest certificate (DER) already checked against the approved key: later streams compare bytes, not parse. */
  checked?: Buffer;
}

export interface AgentEvents {
  onConnected?(client: ControlClient): void;
  onDisconnected?(err: Error | undefined, retryInMs: number | undefined): void;
  onStream?(sessionId: string, error?: string): void;
}

export class Agent {
  private client: ControlClient | undefined;
  private readonly sessions = new Map<string, AgentSession>();
  /** The inner TLS server's options: TLS 1.3 only, and a client certificate from the CA is required. */
  private readonly tls: InnerTls;
  private stopped = false;
  private attempt = 0;

  constructor(private readonly o: AgentOptions, private readonly events: AgentEvents = {}) {
    this.tls = { key: o.keyPem, cert: o.certPem, ca: o.caPem, requestCert: true, rejectUnauthorized: true, minVersion: TLS_1_3 } as InnerTls;
  }

  /** Connects and registers; resolves once the share is live. Rejects on refusal (id taken, not enrolled). */
  async start(): Promise<ControlClient> {
    const c = await ControlClient.dial(this.o);
    c.send({ t: "register", shareId: this.o.shareId, targets: this.o.policy.targets, approver: this.o.approver });
    await c.next("registered").catch((err) => {
      c.close();
      throw err;
    });
    this.attempt = 0;
    this.client = c;
    c.on("session", (f) => this.sessions.set(f.sessionId, { frame: f, streams: new Set() }));
    c.on("incoming", (f) => void this.incoming(f));
    c.on("closed", (f) => this.endSession(f.sessionId));
    c.onClose((err) => this.lost(err));
    this.events.onConnected?.(c);
    return c;
  }

  stop(): void {
    this.stopped = true;
    this.client?.close();
    for (const id of [...this.sessions.keys()]) this.endSession(id);
  }

  private lost(err?: Error): void {
    for (const id of [...this.sessions.keys()]) this.endSession(id);
    if (this.stopped || !this.o.reconnect) {
      this.events.onDisconnected?.(err, undefined);
      return;
    }
    // Exponential backoff with full jitter, capped, so a restarted coordinator isn't stampeded.
    const delay = Math.random() * Math.min(30_000, 500 * 2 ** this.attempt++);
    this.events.onDisconnected?.(err, delay);
    setTimeout(() => {
      if (this.stopped) return;
      this.start().catch((e) => {
        log.warn(errorMessage(e));
        this.lost(e);
      });
    }, delay);
  }

  private endSession(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    for (const sock of [...s.streams]) sock.terminate();
  }

  private async incoming(f: FrameOf<ServerFrame, "incoming">): Promise<void> {
    const s = this.sessions.get(f.sessionId);
    if (!s) return;
    let dest: { host: string; port: number };
    try {
      // The coordinator is not trusted to pick targets: the agent's own list decides.
      dest = await this.o.policy.resolve(s.frame.target);
    } catch (err) {
      log.warn(`refused stream to ${s.frame.target}: ${errorMessage(err)}`);
      this.events.onStream?.(f.sessionId, errorMessage(err));
      return;
    }
    const client = this.client;
    if (!client) return;
    // The target is dialled while the guest's TLS handshake runs (one round trip less per stream);
    // no byte moves between them until the guest's key has been checked in secured().
    const target = Bun.connect<End>({ hostname: dest.host, port: dest.port, allowHalfOpen: true, data: newEnd({ onClose: (up) => s.streams.delete(up) }), socket: PIPE_HANDLERS })
      .then((up) => {
        up.setNoDelay(true);
        s.streams.add(up);
        return up;
      }, (e: unknown) => new Error(`cannot reach ${s.frame.target}: ${errorMessage(e)}`));
    const end = newEnd({
      onHandshake: (inner, ok, err) => this.secured(inner, ok, err, s, f, target),
      onClose: (inner) => s.streams.delete(inner),
    });
    try {
      const { raw, inner } = await dialDataNative(client.peer, f.token, this.tls, end, true);
      if (!this.sessions.has(f.sessionId)) return cutAll(inner, target);
      s.streams.add(raw);
      s.streams.add(inner);
      raw.data.onClose = () => s.streams.delete(raw);
    } catch (err) {
      log.debug(`stream ${f.streamId}: ${errorMessage(err)}`);
      void target.then((up) => up instanceof Error || cut(up));
    }
  }

  private secured(inner: Socket<End>, ok: boolean, err: Error | null, s: AgentSession, f: FrameOf<ServerFrame, "incoming">, target: Promise<Socket<End> | Error>): void {
    // The server side checks no names: with requestCert and rejectUnauthorized a chain that does not
    // lead to the CA fails the handshake, and the key itself is checked next.
    if (!ok || err) {
      log.debug(`stream ${f.streamId}: ${err?.message ?? "TLS handshake failed"}`);
      return cutAll(inner, target);
    }
    // Only the key the host approved may use this session, whatever the CA signed.
    if (!peerKeyIs(inner, s.frame.guest.spki, s)) {
      log.warn(`stream ${f.streamId}: guest key does not match the approved key; dropped`);
      return cutAll(inner, target);
    }
    // Bytes either side sends meanwhile wait in its socket (bounded; see pipe.ts).
    void target.then((up) => {
      if (up instanceof Error) {
        this.events.onStream?.(f.sessionId, up.message);
        return cut(inner);
      }
      if (inner.data.closed || up.data.closed || !this.sessions.has(f.sessionId)) return cutAll(inner, target);
      pair(inner, up);
      this.events.onStream?.(f.sessionId);
    });
  }
}

/** Cuts the guest's side and, once it is connected, the target's. */
function cutAll(inner: Socket<End>, target: Promise<Socket<End> | Error>): void {
  cut(inner);
  void target.then((up) => up instanceof Error || cut(up));
}
