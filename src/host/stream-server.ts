// The agent's stream work: for each stream the coordinator offers, dial its data connection, serve the
// guest's end-to-end TLS on it, check the key, and pipe it to the target (or hand it to the shell).
import type { Socket } from "bun";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { ControlClient } from "../wire/control-client.ts";
import type { InnerTls } from "../data/data-dial.ts";
import { dialVerified } from "../data/verified-stream.ts";
import { cut, newEnd, pair, PIPE_HANDLERS, type End } from "../data/pipe.ts";
import { asDuplex } from "../data/socket-duplex.ts";
import { SHELL_TARGET, type FrameOf, type ServerFrame } from "../wire/protocol.ts";
import type { TargetPolicy } from "./policy.ts";
import type { ScopeKeeper } from "./scopes.ts";
import type { AgentEvents, AgentSession, StreamService } from "./types.ts";
import type { DirectDialer } from "./direct-dialer.ts";

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
}

export class StreamServer {
  constructor(private readonly o: StreamServerOptions) {}

  async incoming(f: FrameOf<ServerFrame, "incoming">): Promise<void> {
    const s = this.o.session(f.sessionId);
    // Not a session this agent holds (ended, or one it refused): say so now rather than let the token lapse.
    if (!s) return this.refuse(f, "this agent holds no such session");
    if (f.pool) return this.incomingPooled(f, s);
    // The host's scoped yes, held here whatever the coordinator offers.
    const beyond = this.o.scopes.take(f.sessionId, Date.now());
    if (beyond) return this.refuse(f, beyond);
    if (s.frame.target === SHELL_TARGET) return this.incomingShell(f, s);
    if (!this.setUp(f, s)) return;
    // The target is dialled while the guest's TLS handshake runs (one round trip less per stream);
    // no byte moves between them until the guest's key has been checked (onVerified), and the target
    // connection lives no longer than the stream's setup: see dial.
    const target = (await this.target(f, s))?.conn;
    if (!target || !this.o.client() || !this.o.session(f.sessionId)) {
      void target?.then((up) => up instanceof Error || cut(up));
      return void s.settingUp--;
    }
    await this.via(f, s, {
      onVerified: (inner) => void target.then((up) => this.join(f, s, inner, up)),
      onFailed: () => void target.then((up) => up instanceof Error || cut(up)),
    });
  }

  /**
   * A pooled stream: its TLS is served and checked now, but it waits, reaching nothing, until the
   * coordinator's "use" says it is audited (see use). The scope counts it then, not now.
   */
  private async incomingPooled(f: FrameOf<ServerFrame, "incoming">, s: AgentSession): Promise<void> {
    if (s.frame.target === SHELL_TARGET) return this.refuse(f, "a shell's streams are not pooled");
    if (!this.setUp(f, s)) return;
    s.pool.set(f.streamId, undefined);
    await this.via(f, s, {
      onVerified: (inner) => {
        if (!s.pool.has(f.streamId)) return cut(inner);
        s.pool.set(f.streamId, inner);
        const closed = inner.data.onClose;
        inner.data.onClose = (sock, clean) => {
          if (s.pool.get(f.streamId) === inner) s.pool.delete(f.streamId);
          closed?.(sock, clean);
        };
        if (s.usedEarly.delete(f.streamId)) void this.use(f);
      },
      onFailed: () => {
        s.pool.delete(f.streamId);
        s.usedEarly.delete(f.streamId);
      },
    });
  }

  /** The coordinator says a pooled stream was put to work and is audited: it goes to the target now. */
  async use(f: { sessionId: string; streamId: string }): Promise<void> {
    const s = this.o.session(f.sessionId);
    if (!s?.pool.has(f.streamId)) return;
    const inner = s.pool.get(f.streamId);
    // The guest's TLS is verified on its side but not yet here (its last flight is on the way).
    if (!inner) return void s.usedEarly.add(f.streamId);
    s.pool.delete(f.streamId);
    const beyond = this.o.scopes.take(f.sessionId, Date.now());
    if (beyond) {
      cut(inner);
      return this.refuse(f, beyond);
    }
    const target = await this.target(f, s);
    if (!target) return cut(inner);
    this.join(f, s, inner, await target.conn);
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

  /**
   * Resolves the session's target by the agent's own list (the coordinator is not trusted to pick
   * targets) and starts connecting to it; undefined when the list refuses it (the stream is refused).
   */
  private async target(
    f: { sessionId: string; streamId: string },
    s: AgentSession,
  ): Promise<{ conn: Promise<Socket<End> | Error> } | undefined> {
    let dest: { host: string; port: number };
    try {
      dest = await this.o.policy.resolve(s.frame.target);
    } catch (err) {
      log.warn(`refused stream to ${s.frame.target}: ${errorMessage(err)}`);
      this.o.events.onStream?.(f.sessionId, errorMessage(err));
      this.refuse(f, errorMessage(err));
      return undefined;
    }
    const conn = Bun.connect<End>({
      hostname: dest.host,
      port: dest.port,
      allowHalfOpen: true,
      data: newEnd({ onClose: (up) => s.streams.delete(up) }),
      socket: PIPE_HANDLERS,
    }).then(
      (up) => {
        up.setNoDelay(true);
        s.streams.add(up);
        return up;
      },
      (e: unknown) => {
        // Said at once, to the guest too: "nothing is listening" is the host's to fix, not a network fault.
        const refused = (e as { code?: string }).code === "ECONNREFUSED";
        const err = new Error(
          refused
            ? `the host's ${s.frame.target} refused the connection (is anything listening there?)`
            : `the host cannot reach ${s.frame.target}: ${errorMessage(e)}`,
        );
        this.refuse(f, err.message);
        return err;
      },
    );
    return { conn };
  }

  /** A verified stream meets its target connection; bytes either side sent meanwhile wait in its socket (bounded; see pipe.ts). */
  private join(f: { sessionId: string }, _s: AgentSession, inner: Socket<End>, up: Socket<End> | Error): void {
    if (up instanceof Error) {
      this.o.events.onStream?.(f.sessionId, up.message);
      return cut(inner);
    }
    if (inner.data.closed || up.data.closed || !this.o.session(f.sessionId)) {
      cut(inner);
      return cut(up);
    }
    pair(inner, up);
    this.o.events.onStream?.(f.sessionId);
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
        token: f.token,
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

  private refuse(f: { sessionId: string; streamId: string }, reason: string): void {
    this.o.client()?.send({ t: "refuse", sessionId: f.sessionId, streamId: f.streamId, reason: reason.slice(0, 200) });
  }

  /** A shell session: the verified stream goes to the shell service (the host's PTY), not to a TCP target. */
  private async incomingShell(f: FrameOf<ServerFrame, "incoming">, s: AgentSession): Promise<void> {
    const shell = this.o.shell;
    // The agent's own options decide whether a shell is offered, whatever the coordinator asks.
    if (!shell) {
      this.o.events.onStream?.(f.sessionId, "refused a shell stream: this agent does not share a shell");
      return this.refuse(f, "this host does not share a shell");
    }
    if (!this.setUp(f, s)) return;
    await this.via(f, s, {
      onVerified: (inner) => {
        if (!this.o.session(f.sessionId)) return void cut(inner);
        shell.serve(asDuplex(inner), { ...s.frame, readOnly: this.o.scopes.readOnly(f.sessionId) });
        this.o.events.onStream?.(f.sessionId);
      },
      onFailed: () => {},
    });
  }
}

/** A data connection and the TLS over it. */
function cutBoth(conn: { raw: Socket<End>; inner: Socket<End> }): void {
  cut(conn.inner);
  cut(conn.raw);
}
