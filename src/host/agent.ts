// The host's agent: keeps a control connection to the coordinator, and for each approved stream
// dials the coordinator's data plane, terminates the guest's end-to-end TLS and pipes to the target.
import type { Duplex } from "node:stream";
import type { Socket } from "bun";
import { RefusedError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { backoff } from "../wire/backoff.ts";
import { ControlClient, type DialOptions } from "../wire/control-client.ts";
import { dialDataNative, peerKeyIs, TLS_1_3, type InnerTls } from "../data/data-dial.ts";
import { cut, newEnd, pair, PIPE_HANDLERS, type End } from "../data/pipe.ts";
import type { TargetPolicy } from "./policy.ts";
import { SHELL_TARGET, type FrameOf, type ServerFrame } from "../wire/protocol.ts";
import { asDuplex } from "../data/socket-duplex.ts";

const log = logger("agent");

export interface AgentOptions extends Required<Pick<DialOptions, "address" | "caPem" | "keyPem" | "certPem" | "version">> {
  shareId: string;
  policy: TargetPolicy;
  /** Also approve requests on this connection (the embedded agent of `tessera share --port`). */
  approver: boolean;
  /** Keep reconnecting (with backoff) rather than fail on the first disconnect. */
  reconnect: boolean;
  /** Serves sessions whose target is SHELL_TARGET (`share --shell`); without it such streams are refused. */
  shell?: StreamService;
}

/** Something on the host that takes a verified end-to-end stream directly instead of a TCP target. */
export interface StreamService {
  serve(stream: Duplex, session: { sessionId: string; guest: { name: string } }): void;
  /** The coordinator closed the session (its streams merely dropping does not mean that). */
  closed?(sessionId: string, reason: string): void;
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
  /** retryInMs is undefined when the agent gives up (stopped, or refused for good). */
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
    const targets = [...this.o.policy.targets, ...(this.o.shell ? [SHELL_TARGET] : [])];
    c.send({ t: "register", shareId: this.o.shareId, targets, approver: this.o.approver });
    await c.next("registered").catch((err) => {
      c.close();
      throw err;
    });
    this.attempt = 0;
    this.client = c;
    c.on("session", (f) => this.sessions.set(f.sessionId, { frame: f, streams: new Set() }));
    c.on("incoming", (f) => void this.incoming(f));
    c.on("closed", (f) => {
      this.o.shell?.closed?.(f.sessionId, f.reason);
      this.endSession(f.sessionId);
    });
    c.onClose((err) => this.lost(err));
    this.events.onConnected?.(c);
    return c;
  }

  /** Stops on purpose: the coordinator closes the share and its sessions (a lost connection would not). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.client?.leave(this.o.shareId);
    for (const id of [...this.sessions.keys()]) this.endSession(id);
  }

  private lost(err?: Error): void {
    for (const id of [...this.sessions.keys()]) this.endSession(id);
    // Refusals that no retry can fix: someone else's share id, or a host the coordinator does not know.
    const fatal = err instanceof RefusedError && ["share_taken", "not_host", "version"].includes(err.code);
    if (this.stopped || !this.o.reconnect || fatal) {
      this.events.onDisconnected?.(err, undefined);
      return;
    }
    const delay = backoff(this.attempt++);
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
    if (s.frame.target === SHELL_TARGET) return this.incomingShell(f, s);
    let dest: { host: string; port: number };
    try {
      // The coordinator is not trusted to pick targets: the agent's own list decides.
      dest = await this.o.policy.resolve(s.frame.target);
    } catch (err) {
      log.warn(`refused stream to ${s.frame.target}: ${errorMessage(err)}`);
      this.events.onStream?.(f.sessionId, errorMessage(err));
      return this.refuse(f, errorMessage(err));
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

  private refuse(f: FrameOf<ServerFrame, "incoming">, reason: string): void {
    this.client?.send({ t: "refuse", sessionId: f.sessionId, streamId: f.streamId, reason: reason.slice(0, 200) });
  }

  /** A shell session: the verified stream goes to the shell service (the host's PTY), not to a TCP target. */
  private async incomingShell(f: FrameOf<ServerFrame, "incoming">, s: AgentSession): Promise<void> {
    const shell = this.o.shell;
    // The agent's own options decide whether a shell is offered, whatever the coordinator asks.
    if (!shell) {
      this.events.onStream?.(f.sessionId, "refused a shell stream: this agent does not share a shell");
      return this.refuse(f, "this host does not share a shell");
    }
    const client = this.client;
    if (!client) return;
    const end = newEnd({
      onHandshake: (inner, ok, err) => {
        if (!ok || err) return void cut(inner);
        if (!peerKeyIs(inner, s.frame.guest.spki, s)) {
          log.warn(`stream ${f.streamId}: guest key does not match the approved key; dropped`);
          return void cut(inner);
        }
        if (!this.sessions.has(f.sessionId)) return void cut(inner);
        shell.serve(asDuplex(inner), s.frame);
        this.events.onStream?.(f.sessionId);
      },
      onClose: (inner) => s.streams.delete(inner),
    });
    try {
      const { raw, inner } = await dialDataNative(client.peer, f.token, this.tls, end, true);
      if (!this.sessions.has(f.sessionId)) return cut(inner);
      s.streams.add(raw);
      s.streams.add(inner);
      raw.data.onClose = () => s.streams.delete(raw);
    } catch (err) {
      log.debug(`stream ${f.streamId}: ${errorMessage(err)}`);
    }
  }
}

/** Cuts the guest's side and, once it is connected, the target's. */
function cutAll(inner: Socket<End>, target: Promise<Socket<End> | Error>): void {
  cut(inner);
  void target.then((up) => up instanceof Error || cut(up));
}

/** Both directions of a node stream finished (a clean end rather than a cut). */
export function cleanlyDone(sock: { readableEnded: boolean; writableFinished: boolean }): boolean {
  return sock.readableEnded && sock.writableFinished;
}
