// The host's agent: keeps a control connection to the coordinator, and for each approved stream
// dials the coordinator's data plane, terminates the guest's end-to-end TLS and pipes to the target.
import type { Duplex } from "node:stream";
import type { Socket } from "bun";
import { RefusedError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { Reconnector } from "../wire/reconnect.ts";
import { ControlClient, type DialOptions } from "../wire/control-client.ts";
import { TLS_1_3, type InnerTls } from "../data/data-dial.ts";
import { dialVerified, type VerifiedStreamOptions } from "../data/verified-stream.ts";
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
  private readonly reconnect: Reconnector;

  constructor(private readonly o: AgentOptions, private readonly events: AgentEvents = {}) {
    this.tls = { key: o.keyPem, cert: o.certPem, ca: o.caPem, requestCert: true, rejectUnauthorized: true, minVersion: TLS_1_3 } as InnerTls;
    this.reconnect = new Reconnector({
      connect: () => this.start().then(() => {}, (e: unknown) => {
        log.warn(errorMessage(e));
        throw e;
      }),
      fatal: refusedForGood,
      onRetry: (err, delay) => this.events.onDisconnected?.(err, delay),
      onGiveUp: (err) => this.events.onDisconnected?.(err, undefined),
    });
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
    this.reconnect.stop();
    await this.client?.leave(this.o.shareId);
    for (const id of [...this.sessions.keys()]) this.endSession(id);
  }

  private lost(err?: Error): void {
    for (const id of [...this.sessions.keys()]) this.endSession(id);
    if (this.stopped || !this.o.reconnect) return this.events.onDisconnected?.(err, undefined);
    this.reconnect.lost(err);
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
    if (!this.client) return;
    // The target is dialled while the guest's TLS handshake runs (one round trip less per stream);
    // no byte moves between them until the guest's key has been checked (onVerified).
    const target = Bun.connect<End>({ hostname: dest.host, port: dest.port, allowHalfOpen: true, data: newEnd({ onClose: (up) => s.streams.delete(up) }), socket: PIPE_HANDLERS })
      .then((up) => {
        up.setNoDelay(true);
        s.streams.add(up);
        return up;
      }, (e: unknown) => new Error(`cannot reach ${s.frame.target}: ${errorMessage(e)}`));
    try {
      const started = await this.dial(f, s, {
        onVerified: (inner) => void target.then((up) => {
          // Bytes either side sent meanwhile wait in its socket (bounded; see pipe.ts).
          if (up instanceof Error) {
            this.events.onStream?.(f.sessionId, up.message);
            return cut(inner);
          }
          if (inner.data.closed || up.data.closed || !this.sessions.has(f.sessionId)) return cutAll(inner, target);
          pair(inner, up);
          this.events.onStream?.(f.sessionId);
        }),
        onRejected: (why) => {
          log.warn(`stream ${f.streamId}: ${why}; dropped`);
          void target.then((up) => up instanceof Error || cut(up));
        },
      });
      if (!started) void target.then((up) => up instanceof Error || cut(up));
    } catch (err) {
      log.debug(`stream ${f.streamId}: ${errorMessage(err)}`);
      void target.then((up) => up instanceof Error || cut(up));
    }
  }

  /**
   * Dials the stream's data connection and serves the guest's end-to-end TLS on it; only the key the
   * host approved may use this session, whatever the CA signed. The stream's sockets are the session's.
   * False when there is no stream after all (no connection, or the session ended meanwhile).
   */
  private async dial(f: FrameOf<ServerFrame, "incoming">, s: AgentSession, on: Pick<VerifiedStreamOptions, "onVerified" | "onRejected">): Promise<boolean> {
    const client = this.client;
    if (!client) return false;
    const { raw, inner } = await dialVerified(client.peer, {
      token: f.token, tls: this.tls, isServer: true, peerRole: "guest", peerSpki: s.frame.guest.spki, checked: s,
      ...on,
      onClose: (inner) => s.streams.delete(inner),
    });
    if (!this.sessions.has(f.sessionId)) {
      cut(inner);
      return false;
    }
    s.streams.add(raw);
    s.streams.add(inner);
    raw.data.onClose = () => s.streams.delete(raw);
    return true;
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
    try {
      await this.dial(f, s, {
        onVerified: (inner) => {
          if (!this.sessions.has(f.sessionId)) return void cut(inner);
          shell.serve(asDuplex(inner), s.frame);
          this.events.onStream?.(f.sessionId);
        },
        onRejected: (why) => log.warn(`stream ${f.streamId}: ${why}; dropped`),
      });
    } catch (err) {
      log.debug(`stream ${f.streamId}: ${errorMessage(err)}`);
    }
  }
}

/** Refusals that no retry can fix: someone else's share id, a host the coordinator does not know or removed, another protocol. */
export function refusedForGood(err: Error | undefined): boolean {
  return err instanceof RefusedError && ["share_taken", "not_host", "host_removed", "version"].includes(err.code);
}

/** Cuts the guest's side and, once it is connected, the target's. */
function cutAll(inner: Socket<End>, target: Promise<Socket<End> | Error>): void {
  cut(inner);
  void target.then((up) => up instanceof Error || cut(up));
}
