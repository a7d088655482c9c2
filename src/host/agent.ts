// The host's agent: keeps a control connection to the coordinator, holds the sessions it was told of
// (each checked here: session-check.ts, scopes.ts) and hands their streams to stream-server.ts.
import { RefusedError } from "../errors.ts";
import { Reconnector } from "../wire/reconnect.ts";
import { ControlClient, type DialOptions } from "../wire/control-client.ts";
import { TLS_1_3, type InnerTls } from "../data/data-dial.ts";
import type { TargetPolicy } from "./policy.ts";
import { ScopeKeeper } from "./scopes.ts";
import { sessionRefusal } from "./session-check.ts";
import { YesBook } from "./yes-book.ts";
import type { ApproverBook } from "./approver-book.ts";
import { spkiFingerprint } from "../pki/index.ts";
import { SHELL_TARGET } from "../wire/protocol.ts";
import { StreamServer } from "./stream-server.ts";
import { DirectDialer } from "./direct-dialer.ts";
import { SessionChannels } from "./session-channels.ts";
import type { AgentEvents, AgentSession, StreamService } from "./types.ts";

export interface AgentOptions
  extends Required<Pick<DialOptions, "address" | "caPem" | "keyPem" | "certPem" | "version">> {
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
  /**
   * The yeses the share's own approver gave in this process (host/consent.ts grants them): only those pass, each
   * for one session. Without it the agent keeps its own book (in `usedReceipts` when given).
   */
  vouch?: YesBook;
  /** Serve only sessions whose approval carries a receipt this host's own key signed (wire/receipt.ts). */
  receipts?: boolean;
  /** The host's approvers book: receipts its delegated approvers signed pass through its chain check (approver-book.ts). */
  approvers?: ApproverBook;
  /** A standalone agent's record of the receipts it served (one session each), kept across its restarts. */
  usedReceipts?: string;
  /** A stream not verified within this time is dropped with its target connection (default STREAM_SETUP_TIMEOUT_MS in stream-server.ts). */
  streamSetupTimeoutMs?: number;
  /** `--relay-only`: the agent dials no direct-path hint; every stream goes through the coordinator. */
  relayOnly?: boolean;
  /** `--direct-listen`: the agent also listens and offers its addresses, so a guest it cannot reach may reach it. */
  directListen?: boolean;
}

export type { AgentEvents, AgentSession, StreamService } from "./types.ts";

/** How long an ended session's channel connections may take to close by themselves before they are cut. */
const CHANNEL_GRACE_MS = 2_000;
/** A move (see Agent.move) tries this often, this far apart, while the old connection stands. */
const MOVE_ATTEMPTS = 60;
const MOVE_RETRY_MS = 500;

export class Agent {
  private client: ControlClient | undefined;
  private readonly sessions = new Map<string, AgentSession>();
  /** The inner TLS server's options: TLS 1.3 only, and a client certificate from the CA is required. */
  private readonly tls: InnerTls;
  private stopped = false;
  private moving = false;
  private readonly scopes = new ScopeKeeper();
  private readonly yes: YesBook;
  private readonly hostKey: string;
  private readonly reconnect: Reconnector;
  private readonly streams: StreamServer;
  private readonly direct: DirectDialer;
  private readonly channels: SessionChannels;

  constructor(
    private readonly o: AgentOptions,
    private readonly events: AgentEvents = {},
  ) {
    this.hostKey = spkiFingerprint(o.certPem);
    this.yes = o.vouch ?? new YesBook(o.usedReceipts);
    this.tls = {
      key: o.keyPem,
      cert: o.certPem,
      ca: o.caPem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: TLS_1_3,
    } as InnerTls;
    this.direct = new DirectDialer({
      client: () => this.client,
      tls: this.tls,
      relayOnly: o.relayOnly,
      listen: o.directListen ? { keyPem: o.keyPem } : undefined,
    });
    this.channels = new SessionChannels(() => this.client);
    this.streams = new StreamServer({
      channels: this.channels,
      client: () => this.client,
      session: (id) => this.sessions.get(id),
      policy: o.policy,
      shell: o.shell,
      scopes: this.scopes,
      tls: this.tls,
      events,
      setupTimeoutMs: o.streamSetupTimeoutMs,
      direct: o.relayOnly ? undefined : this.direct,
    });
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
    c.send({
      t: "register",
      shareId: this.o.shareId,
      targets,
      approver: this.o.approver,
      requestsById: this.o.requestsById,
    });
    await c.next("registered").catch((err) => {
      c.close();
      throw err;
    });
    this.client = c;
    c.on("session", (f) => {
      // The coordinator's word alone does not open a session here (see session-check.ts).
      const why = sessionRefusal(
        f,
        {
          vouch: !!this.o.vouch,
          receipts: this.o.receipts,
          hostKey: this.hostKey,
          yes: this.yes,
          approvers: this.o.approvers,
        },
        Date.now(),
      );
      if (why) {
        this.events.onStream?.(f.sessionId, `refused session ${f.sessionId}: ${why.detail}; nothing was served`);
        // The frame's reason holds 200 characters; a longer one would be a bad frame and cost this connection.
        const reason = `refused by the host: ${why.reason}`;
        return c.send({
          t: "end",
          sessionId: f.sessionId,
          reason: reason.length > 200 ? `${reason.slice(0, 199)}…` : reason,
        });
      }
      // Told again after a move to another node: its channels and the streams under way on them stay.
      const before = this.sessions.get(f.sessionId);
      const session: AgentSession = {
        frame: f,
        streams: before?.streams ?? new Set(),
        settingUp: before?.settingUp ?? 0,
      };
      this.sessions.set(f.sessionId, session);
      this.scopes.seen(f, Date.now(), (id) => {
        this.yes.end(id);
        this.endSession(id);
      });
      this.direct.opened(session);
      this.direct.kept(session);
    });
    c.on("incoming", (f) => void this.streams.incoming(f, c));
    c.on("hints", (f) => {
      const s = this.sessions.get(f.sessionId);
      if (s) void this.direct.hints(f, s);
    });
    c.on("fallback", (f) => this.direct.fallback(f.streamId));
    c.on("closed", (f) => {
      // Over for good: a later frame naming it (or its yes) serves nothing.
      this.yes.end(f.sessionId);
      this.o.shell?.closed?.(f.sessionId, f.reason);
      this.scopes.forget(f.sessionId);
      this.endSession(f.sessionId);
    });
    c.onClose((err) => this.lost(err));
    // Only the connection in use moves (a stopping node may say it again on one already left behind).
    c.onMove(() => this.client === c && void this.move());
    this.events.onConnected?.(c);
    return c;
  }

  /**
   * The coordinator node is stopping (a graceful stop): register again on a new connection (through the
   * balancer, so on another node, which takes the share over) while the old one still stands, so the
   * streams under way are not dropped. The old one is left to the stopping node to close (answers to
   * what was asked on it still come that way). Attempts go on while it stands.
   */
  private async move(): Promise<void> {
    if (this.stopped || this.moving) return;
    this.moving = true;
    const old = this.client;
    old?.onClose(() => {});
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await this.start();
          break;
        } catch (err) {
          if (refusedForGood(err as Error) || !old || old.ch.closed || attempt >= MOVE_ATTEMPTS) throw err;
          await Bun.sleep(MOVE_RETRY_MS);
        }
      }
    } catch (err) {
      old?.close();
      this.lost(err as Error);
    } finally {
      this.moving = false;
    }
  }

  /** Stops on purpose: the coordinator closes the share and its sessions (a lost connection would not). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.reconnect.stop();
    this.direct.stop();
    this.channels.stop();
    await this.client?.leave(this.o.shareId);
    for (const id of [...this.sessions.keys()]) this.endSession(id);
  }

  private lost(err?: Error): void {
    this.direct.park();
    for (const id of [...this.sessions.keys()]) this.endSession(id);
    if (this.stopped || !this.o.reconnect) return this.events.onDisconnected?.(err, undefined);
    this.reconnect.lost(err);
  }

  private endSession(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    this.direct.forget(id);
    // Channels end with a FIN after what they hold (streams under way are reset in them); their connections
    // are cut only if still there a moment later (a guest that never closes its end).
    this.channels.closeSession(id);
    const left = [...s.streams];
    if (!left.length) return;
    setTimeout(() => {
      for (const sock of left) sock.terminate();
    }, CHANNEL_GRACE_MS).unref?.();
  }
}

/** Refusals that no retry can fix: someone else's share id, a host the coordinator does not know or removed, another protocol. */
export function refusedForGood(err: Error | undefined): boolean {
  return err instanceof RefusedError && ["share_taken", "not_host", "host_removed", "version"].includes(err.code);
}
