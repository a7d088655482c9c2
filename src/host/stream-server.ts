// The agent's stream work: for each stream the coordinator offers, dial its data connection, serve the
// guest's end-to-end TLS on it, check the key, and pipe it to the target (or hand it to the shell).
import type { Socket } from "bun";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { ControlClient } from "../wire/control-client.ts";
import type { InnerTls } from "../data/data-dial.ts";
import { dialVerified } from "../data/verified-stream.ts";
import { cut, type End } from "../data/pipe.ts";
import { SHELL_TARGET, type FrameOf, type ServerFrame } from "../wire/protocol.ts";
import type { TargetPolicy } from "./policy.ts";
import type { ScopeKeeper } from "./scopes.ts";
import type { AgentEvents, AgentSession, StreamService } from "./types.ts";
import type { DirectDialer } from "./direct-dialer.ts";
import type { SessionChannels } from "./session-channels.ts";

const log = logger("agent");

/**
 * The agent's own bound on a stream's setup, whatever the coordinator does: three times the
 * coordinator's default token lifetime (10 s), as the end-to-end handshake follows the pairing.
 */
export const STREAM_SETUP_TIMEOUT_MS = 30_000;
/** The agent's own cap on a session's streams in setup, above the coordinator's default (256) since it counts until verified, not paired. */
const MAX_SETUPS_PER_SESSION = 1024;

export interface StreamServerOptions {
  /** The live control connection, if any. */
  client(): ControlClient | undefined;
  /** A session this agent holds (undefined once it ended). */
  session(id: string): AgentSession | undefined;
  policy: TargetPolicy;
  shell?: StreamService;
  scopes: ScopeKeeper;
  /** The inner TLS server's options. */
  tls: InnerTls;
  events: AgentEvents;
  setupTimeoutMs?: number;
  /** The direct path (direct-dialer.ts); absent with --relay-only. */
  direct?: DirectDialer;
  /** The sessions' data channels (session-channels.ts). */
  channels: SessionChannels;
}

export class StreamServer {
  constructor(private readonly o: StreamServerOptions) {}

  async incoming(f: FrameOf<ServerFrame, "incoming">, client: ControlClient): Promise<void> {
    const s = this.o.session(f.sessionId);
    // Not a session this agent holds (ended, or one it refused): say so now rather than let the token lapse.
    if (!s) return this.refuse(f, "this agent holds no such session");
    if (f.channel) return this.incomingChannel(f, s);
    if (f.via === undefined || f.mux === undefined || f.token !== undefined)
      return this.refuse(f, "this agent serves streams inside the session's data channel only");
    const on = { via: f.via, mux: f.mux, streamId: f.streamId, reportMs: f.reportMs };
    if (!this.o.channels.has(f.via)) return this.refuse(f, "the stream's data channel is gone");
    // The host's scoped yes, held here whatever the coordinator offers.
    const beyond = this.o.scopes.take(f.sessionId, Date.now());
    if (beyond) return this.refuse(f, beyond);
    if (s.frame.target === SHELL_TARGET) return this.incomingShell(f, s, on, client);
    // Resolved by the agent's own list: the coordinator is not trusted to pick targets.
    let dest: { host: string; port: number };
    try {
      dest = await this.o.policy.resolve(s.frame.target);
    } catch (err) {
      log.warn(`refused stream to ${s.frame.target}: ${errorMessage(err)}`);
      this.o.events.onStream?.(f.sessionId, errorMessage(err));
      return this.refuse(f, errorMessage(err));
    }
    if (!this.o.session(f.sessionId)) return this.refuse(f, "the session ended");
    this.o.channels.admit(on, client, { ...dest, label: s.frame.target }, () =>
      this.refuse(f, "the stream's data channel is gone"),
    );
    this.o.events.onStream?.(f.sessionId);
  }

  /**
   * The session's data channel: its connection is dialled (relay) or made direct, its TLS served and the
   * guest's key checked, and from then on it carries the streams the coordinator admits (session-channels.ts).
   */
  private async incomingChannel(f: FrameOf<ServerFrame, "incoming">, s: AgentSession): Promise<void> {
    if (!f.token) return this.refuse(f, "a data channel needs its token");
    if (!this.setUp(f, s)) return;
    this.o.channels.expect(f.streamId);
    await this.via(f, s, {
      onVerified: (inner) => {
        if (!this.o.session(f.sessionId)) {
          this.o.channels.failed(f.streamId);
          return cut(inner);
        }
        this.o.channels.adopt(f.streamId, f.sessionId, inner);
      },
      onFailed: () => this.o.channels.failed(f.streamId),
    });
  }

  /**
   * Counts a stream in the session's setups, or refuses it past the cap. Counted before the first await,
   * so a burst of offers cannot slip past the cap; dial releases it.
   */
  private setUp(f: { sessionId: string; streamId: string }, s: AgentSession): boolean {
    if (s.settingUp >= MAX_SETUPS_PER_SESSION) {
      this.refuse(f, `${s.settingUp} streams of this session are already waiting for the guest's TLS`);
      return false;
    }
    s.settingUp++;
    return true;
  }

  /** A stream the coordinator put on the direct path goes there first, and through the relay if that fails. */
  private via(
    f: FrameOf<ServerFrame, "incoming">,
    s: AgentSession,
    on: { onVerified(inner: Socket<End>): void; onFailed(why: string): void },
  ): Promise<void> {
    const direct = this.o.direct;
    return f.direct && direct ? direct.serve(f, s, on, () => this.dial(f, s, on)) : this.dial(f, s, on);
  }

  /**
   * Dials the stream's data connection and serves the guest's end-to-end TLS on it; only the key the
   * host approved may use this session, whatever the CA signed. The stream's sockets are the session's;
   * the caller counted the stream in s.settingUp, released here once it is verified or failed. Exactly one of onVerified and onFailed is called. onFailed: no connection; the coordinator dropped
   * the stream (its token lapsed unpicked, it was refused or revoked); a wrong key; the session ended;
   * or no verified TLS within the setup deadline, the agent's own bound whatever the coordinator does
   * (a paired stream whose guest never starts its TLS is invisible to the coordinator).
   */
  private async dial(
    f: FrameOf<ServerFrame, "incoming">,
    s: AgentSession,
    on: { onVerified(inner: Socket<End>): void; onFailed(why: string): void },
  ): Promise<void> {
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
    const ms = this.o.setupTimeoutMs ?? STREAM_SETUP_TIMEOUT_MS;
    const timer = setTimeout(() => fail(`the guest's TLS was not verified within ${ms / 1000}s`), ms);
    timer.unref?.();
    const client = this.o.client();
    if (!client) return fail("not connected to the coordinator");
    try {
      conn = await dialVerified(client.peer, {
        token: f.token!,
        tls: this.o.tls,
        isServer: true,
        peerRole: "guest",
        peerSpki: s.frame.guest.spki,
        checked: s,
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
    if (!this.o.session(f.sessionId)) return fail("the session ended");
    s.streams.add(raw);
    s.streams.add(inner);
  }

  private refuse(f: { sessionId: string; streamId: string; via?: string; mux?: number }, reason: string): void {
    this.o.channels.refuse(f.via, f.mux);
    this.o.client()?.send({ t: "refuse", sessionId: f.sessionId, streamId: f.streamId, reason: reason.slice(0, 200) });
  }

  /** A shell session: the stream goes to the shell service (the host's PTY), not to a TCP target. */
  private incomingShell(
    f: FrameOf<ServerFrame, "incoming">,
    s: AgentSession,
    on: { via: string; mux: number; streamId: string; reportMs?: number },
    client: ControlClient,
  ): void {
    const shell = this.o.shell;
    // The agent's own options decide whether a shell is offered, whatever the coordinator asks.
    if (!shell) {
      this.o.events.onStream?.(f.sessionId, "refused a shell stream: this agent does not share a shell");
      return this.refuse(f, "this host does not share a shell");
    }
    const readOnly = this.o.scopes.readOnly(f.sessionId);
    this.o.channels.admitService(
      on,
      client,
      (d) => {
        shell.serve(d, { ...s.frame, readOnly });
        this.o.events.onStream?.(f.sessionId);
      },
      () => this.refuse(f, "the stream's data channel is gone"),
    );
  }
}

/** A data connection and the TLS over it. */
function cutBoth(conn: { raw: Socket<End>; inner: Socket<End> }): void {
  cut(conn.inner);
  cut(conn.raw);
}
