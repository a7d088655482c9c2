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
import { ScopeKeeper } from "./scopes.ts";
import { sessionRefusal } from "./session-check.ts";
import { spkiFingerprint } from "../pki/index.ts";
import { SHELL_TARGET, type FrameOf, type ServerFrame } from "../wire/protocol.ts";
import { asDuplex } from "../data/socket-duplex.ts";

const log = logger("agent");

export interface AgentOptions extends Required<Pick<DialOptions, "address" | "caPem" | "keyPem" | "certPem" | "version">> {
  shareId: string;
  policy: TargetPolicy;
  /** Also approve requests on this connection (the embedded agent of `tessera share --port`). */
  approver: boolean;
  /** Let guests ask by share id, without a code (`--allow-requests-by-id`); off by default. */
  requestsById?: boolean;
  /** Keep reconnecting (with backoff) rather than fail on the first disconnect. */
  reconnect: boolean;
  /** Serves sessions whose target is SHELL_TARGET (`share --shell`); without it such streams are refused. */
  shell?: StreamService;
  /** Whether this host approved a guest key (share's approver); without it the coordinator's word is taken. */
  vouch?: (guestSpki: string) => boolean;
  /** Serve only sessions whose approval carries a receipt this host's own key signed (pki/receipt.ts). */
  receipts?: boolean;
  /** A stream not verified within this time is dropped with its target connection (default STREAM_SETUP_TIMEOUT_MS). */
  streamSetupTimeoutMs?: number;
}

/**
 * The agent's own bound on a stream's setup, whatever the coordinator does: three times the
 * coordinator's default token lifetime (10 s), as the end-to-end handshake follows the pairing.
 */
export const STREAM_SETUP_TIMEOUT_MS = 30_000;
/** The agent's own cap on a session's streams in setup, above the coordinator's default (256) since it counts until verified, not paired. */
const MAX_SETUPS_PER_SESSION = 1024;

/** Something on the host that takes a verified end-to-end stream directly instead of a TCP target. */
export interface StreamService {
  serve(stream: Duplex, session: { sessionId: string; guest: { name: string }; readOnly?: boolean }): void;
  /** The coordinator closed the session (its streams merely dropping does not mean that). */
  closed?(sessionId: string, reason: string): void;
}

interface AgentSession {
  frame: FrameOf<ServerFrame, "session">;
  /** Every live socket of the session's streams, so a session's end cuts them all at once. */
  streams: Set<Socket<End>>;
  /** The guest certificate (DER) already checked against the approved key: later streams compare bytes, not parse. */
  checked?: Buffer;
  /** Streams offered and not yet verified (or dropped): each may hold a target connection. */
  settingUp: number;
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
  private readonly scopes = new ScopeKeeper();
  private readonly hostKey: string;
  private readonly reconnect: Reconnector;

  constructor(private readonly o: AgentOptions, private readonly events: AgentEvents = {}) {
    this.hostKey = spkiFingerprint(o.certPem);
    this.tls = { key: o.keyPem, cert: o.certPem, ca: o.caPem, requestCert: true, rejectUnauthorized: true, minVersion: TLS_1_3 } as InnerTls;
    this.reconnect = new Reconnector({
      // A failed attempt is reported once, by onRetry: the embedding command decides how to show it.
      connect: () => this.start().then(() => {}),
      fatal: refusedForGood,
      onRetry: (err, delay) => this.events.onDisconnected?.(err, delay),
      onGiveUp: (err) => this.events.onDisconnected?.(err, undefined),
    });
  }

  /** Connects and registers; resolves once the share is live. Rejects on refusal (id taken, not enrolled). */
  async start(): Promise<ControlClient> {
    const c = await ControlClient.dial(this.o);
    const targets = [...this.o.policy.targets, ...(this.o.shell ? [SHELL_TARGET] : [])];
    c.send({ t: "register", shareId: this.o.shareId, targets, approver: this.o.approver, requestsById: this.o.requestsById });
    await c.next("registered").catch((err) => {
      c.close();
      throw err;
    });
    this.client = c;
    c.on("session", (f) => {
      // The coordinator's word alone does not open a session here (see session-check.ts).
      const why = sessionRefusal(f, { vouch: this.o.vouch, receipts: this.o.receipts, hostKey: this.hostKey });
      if (why) {
        this.events.onStream?.(f.sessionId, `refused session ${f.sessionId}: ${why.detail}; nothing was served`);
        return c.send({ t: "end", sessionId: f.sessionId, reason: `refused by the host: ${why.reason}` });
      }
      this.sessions.set(f.sessionId, { frame: f, streams: new Set(), settingUp: 0 });
      this.scopes.seen(f, Date.now(), (id) => this.endSession(id));
    });
    c.on("incoming", (f) => void this.incoming(f));
    c.on("closed", (f) => {
      this.o.shell?.closed?.(f.sessionId, f.reason);
      this.scopes.forget(f.sessionId);
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
    // Not a session this agent holds (ended, or one it refused): say so now rather than let the token lapse.
    if (!s) return this.refuse(f, "this agent holds no such session");
    // The host's scoped yes, held here whatever the coordinator offers.
    const beyond = this.scopes.take(f.sessionId, Date.now());
    if (beyond) return this.refuse(f, beyond);
    if (s.frame.target === SHELL_TARGET) return this.incomingShell(f, s);
    if (s.settingUp >= MAX_SETUPS_PER_SESSION) return this.refuse(f, `${s.settingUp} streams of this session are already waiting for the guest's TLS`);
    // Counted before the first await, so a burst of offers cannot slip past the cap; dial releases it.
    s.settingUp++;
    let dest: { host: string; port: number };
    try {
      // The coordinator is not trusted to pick targets: the agent's own list decides.
      dest = await this.o.policy.resolve(s.frame.target);
    } catch (err) {
      s.settingUp--;
      log.warn(`refused stream to ${s.frame.target}: ${errorMessage(err)}`);
      this.events.onStream?.(f.sessionId, errorMessage(err));
      return this.refuse(f, errorMessage(err));
    }
    if (!this.client || !this.sessions.has(f.sessionId)) return void s.settingUp--;
    // The target is dialled while the guest's TLS handshake runs (one round trip less per stream);
    // no byte moves between them until the guest's key has been checked (onVerified), and the target
    // connection lives no longer than the stream's setup: see dial.
    const target = Bun.connect<End>({ hostname: dest.host, port: dest.port, allowHalfOpen: true, data: newEnd({ onClose: (up) => s.streams.delete(up) }), socket: PIPE_HANDLERS })
      .then((up) => {
        up.setNoDelay(true);
        s.streams.add(up);
        return up;
      }, (e: unknown) => {
        // Said at once, to the guest too: "nothing is listening" is the host's to fix, not a network fault.
        const refused = (e as { code?: string }).code === "ECONNREFUSED";
        const err = new Error(refused ? `the host's ${s.frame.target} refused the connection (is anything listening there?)` : `the host cannot reach ${s.frame.target}: ${errorMessage(e)}`);
        this.refuse(f, err.message);
        return err;
      });
    await this.dial(f, s, {
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
      onFailed: () => void target.then((up) => up instanceof Error || cut(up)),
    });
  }

  /**
   * Dials the stream's data connection and serves the guest's end-to-end TLS on it; only the key the
   * host approved may use this session, whatever the CA signed. The stream's sockets are the session's;
   * the caller counted the stream in s.settingUp, released here once it is verified or failed. Exactly one of onVerified and onFailed is called. onFailed: no connection; the coordinator dropped
   * the stream (its token lapsed unpicked, it was refused or revoked); a wrong key; the session ended;
   * or no verified TLS within the setup deadline, the agent's own bound whatever the coordinator does
   * (a paired stream whose guest never starts its TLS is invisible to the coordinator).
   */
  private async dial(f: FrameOf<ServerFrame, "incoming">, s: AgentSession, on: { onVerified(inner: Socket<End>): void; onFailed(why: string): void }): Promise<void> {
    let state = "setup" as "setup" | "verified" | "failed";
    let conn: { raw: Socket<End>; inner: Socket<End> } | undefined;
    const settle = (to: "verified" | "failed"): boolean => {
      if (state !== "setup") return false;
      state = to;
      s.settingUp--;
      clearTimeout(timer);
      return true;
    };
    const fail = (why: string): void => {
      if (!settle("failed")) return;
      if (conn) cutBoth(conn);
      log.debug(`stream ${f.streamId}: ${why}; dropped`);
      on.onFailed(why);
    };
    const ms = this.o.streamSetupTimeoutMs ?? STREAM_SETUP_TIMEOUT_MS;
    const timer = setTimeout(() => fail(`the guest's TLS was not verified within ${ms / 1000}s`), ms);
    timer.unref?.();
    const client = this.client;
    if (!client) return fail("not connected to the coordinator");
    try {
      conn = await dialVerified(client.peer, {
        token: f.token, tls: this.tls, isServer: true, peerRole: "guest", peerSpki: s.frame.guest.spki, checked: s,
        onVerified: (inner) => {
          if (settle("verified")) on.onVerified(inner);
          else cut(inner);
        },
        onRejected: (why) => {
          log.warn(`stream ${f.streamId}: ${why}; dropped`);
          fail(why);
        },
        onClose: (inner) => {
          s.streams.delete(inner);
          fail("the data connection closed before the guest's TLS was verified");
        },
      });
    } catch (err) {
      return fail(errorMessage(err));
    }
    const { raw, inner } = conn;
    raw.data.onClose = () => {
      s.streams.delete(raw);
      fail("the coordinator dropped the data connection before the guest's TLS was verified");
    };
    if (state === "failed") return cutBoth(conn);
    if (!this.sessions.has(f.sessionId)) return fail("the session ended");
    s.streams.add(raw);
    s.streams.add(inner);
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
    if (s.settingUp >= MAX_SETUPS_PER_SESSION) return this.refuse(f, `${s.settingUp} streams of this session are already waiting for the guest's TLS`);
    s.settingUp++;
    await this.dial(f, s, {
      onVerified: (inner) => {
        if (!this.sessions.has(f.sessionId)) return void cut(inner);
        shell.serve(asDuplex(inner), { ...s.frame, readOnly: this.scopes.readOnly(f.sessionId) });
        this.events.onStream?.(f.sessionId);
      },
      onFailed: () => {},
    });
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

/** A data connection and the TLS over it. */
function cutBoth(conn: { raw: Socket<End>; inner: Socket<End> }): void {
  cut(conn.inner);
  cut(conn.raw);
}
