// The agent's end of the direct path. It checks a guest's signed hints (wire/hints.ts) against the key
// the host approved, applies its deny list and cap (hint-check.ts), probes each allowed hint once with
// the session's end-to-end TLS, and dials only the address that proved to be the guest for the
// session's data channels. With `--direct-listen` it also listens and offers its own signed hints, and
// the guest dials it instead. A channel whose direct connection fails goes through the relay.
import type { Socket } from "bun";
import { logger } from "../log.ts";
import type { ControlClient } from "../wire/control-client.ts";
import { hintsProblem, localHints, probeToken, signHints, type Hint } from "../wire/hints.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";
import { formatTarget } from "../wire/address.ts";
import type { InnerTls } from "../data/data-dial.ts";
import type { End } from "../data/pipe.ts";
import { cutBoth, dialDirect, firstProbe, type Conn, type DirectDialOptions } from "../data/direct-dial.ts";
import { DirectAcceptor, type PeerPin } from "../data/direct-accept.ts";
import { StreamReports } from "../wire/stream-reports.ts";
import { checkHints, isLoopbackAddr } from "./hint-check.ts";
import type { AgentSession } from "./types.ts";

const log = logger("agent:direct");

/** Proved addresses kept for sessions to come back after a reconnect (see park). */
const MAX_PARKED = 1024;

export interface DirectDialerOptions {
  client(): ControlClient | undefined;
  /** The inner TLS server's options, as on the relay: the agent serves the end-to-end TLS, dialling or dialled. */
  tls: InnerTls;
  /** `--relay-only`: no hint is ever dialled, nothing listens. */
  relayOnly?: boolean;
  /** `--direct-listen`: also listen, and offer this host's addresses, signed with its key (PKCS#8 PEM). */
  listen?: { keyPem: string };
  dialTimeoutMs?: number;
}

interface Path {
  /** The one address that proved to be this session's guest; undefined while probing or after a failure. */
  addr?: Hint;
  /** The guest's hints came (once a session). */
  hinted: boolean;
}

type On = { onVerified(inner: Socket<End>): void; onFailed(why: string): void };

export class DirectDialer {
  private readonly paths = new Map<string, Path>();
  /** Addresses proved before the connection to the coordinator was lost, by session: kept if the session comes back. */
  private readonly parked = new Map<string, Hint>();
  private acceptor: DirectAcceptor | undefined;
  private port: number | undefined;
  private readonly reports = new StreamReports((f) => this.o.client()?.send(f));

  constructor(private readonly o: DirectDialerOptions) {}

  /** A session this agent now holds: with --direct-listen its guest is offered this host's addresses, signed. */
  opened(s: AgentSession): void {
    if (!this.o.listen || this.o.relayOnly) return;
    const c = this.o.client();
    if (!c) return;
    if (!this.acceptor) {
      this.acceptor = new DirectAcceptor({ tls: this.o.tls, isServer: true, peerRole: "guest" });
      this.port = this.acceptor.listen();
      log.info(`listening for guests' direct connections on port ${this.port} (--direct-listen)`);
    }
    const id = s.frame.sessionId;
    this.path(id);
    this.acceptor.allowProbe(probeToken(id), pin(s));
    const onLoopback = isLoopbackAddr(`${c.socket.localAddress ?? ""}:0`);
    c.send({ t: "hints", ...signHints(this.o.listen.keyPem, id, "host", localHints(this.port!, onLoopback)) });
  }

  /**
   * The connection to the coordinator is lost: the proved addresses wait for their sessions to come back.
   * A session that ended meanwhile is never sent again, so only the newest MAX_PARKED are kept.
   */
  park(): void {
    for (const [id, p] of this.paths) if (p.addr) this.parked.set(id, p.addr);
    for (const id of this.parked.keys()) {
      if (this.parked.size <= MAX_PARKED) break;
      this.parked.delete(id);
    }
  }

  /**
   * A session sent again after a reconnect: the address it proved before is its direct path again, said
   * to the coordinator without dialling anything (the guest's hints are probed once a session).
   */
  kept(s: AgentSession): void {
    const id = s.frame.sessionId;
    const addr = this.parked.get(id);
    this.parked.delete(id);
    if (!addr || this.o.relayOnly) return;
    const path = this.path(id);
    path.hinted = true;
    path.addr = addr;
    log.info(
      `session ${id}: direct path to the guest at ${formatTarget(addr.host, addr.port)} kept across the reconnect`,
    );
    this.o
      .client()
      ?.send({ t: "direct", sessionId: id, ok: true, offered: 0, dialled: 0, refused: 0, over: 0, kept: true });
  }

  /** The guest's hints for a session this agent holds: checked, probed, and the outcome reported for the audit log. */
  async hints(f: FrameOf<ServerFrame, "hints">, s: AgentSession): Promise<void> {
    const report = (ok: boolean, counts: { dialled: number; refused: number; over: number }, reason?: string) =>
      this.o.client()?.send({
        t: "direct",
        sessionId: f.sessionId,
        ok,
        offered: f.hints.length,
        ...counts,
        ...(reason ? { reason: reason.slice(0, 200) } : {}),
      });
    const none = { dialled: 0, refused: 0, over: 0 };
    if (this.o.relayOnly) return report(false, none, "the host runs with --relay-only");
    const path = this.path(f.sessionId);
    // One set of hints a session: each hint is dialled at most once, whatever is sent again.
    if (path.hinted) return report(false, none, "hints were already offered for this session");
    path.hinted = true;
    const forged = hintsProblem(f, "guest", s.frame.guest.spki);
    if (forged) {
      log.warn(`session ${f.sessionId}: refused the direct-path hints: ${forged}; nothing was dialled`);
      return report(false, none, `refused: ${forged}`);
    }
    const v = checkHints(f.hints, { guestOnLoopback: isLoopbackAddr(s.frame.guest.addr) });
    if (v.refused.length)
      log.warn(
        `session ${f.sessionId}: ${v.refused.length} hint(s) refused by the deny list (${v.refused
          .slice(0, 3)
          .map((r) => `${r.hint.host}: ${r.why}`)
          .join("; ")})`,
      );
    if (v.over) log.warn(`session ${f.sessionId}: ${v.over} hint(s) over the cap of ${v.dial.length} were not dialled`);
    const counts = { dialled: v.dial.length, refused: v.refused.length, over: v.over };
    if (!v.dial.length) return report(false, counts, "no hint may be dialled");
    // In parallel, each once; the first that proves to be the guest is the session's direct path.
    const { won, why } = await firstProbe(v.dial, f.sessionId, this.dialOptions(s));
    if (this.paths.get(f.sessionId) !== path) return;
    if (!won) {
      log.warn(`session ${f.sessionId}: no direct path (${why.join("; ")}); streams go through the coordinator`);
      return report(false, counts, `no hint reached the guest (${why.join("; ")})`);
    }
    path.addr = won;
    log.info(`session ${f.sessionId}: direct path to the guest at ${formatTarget(won.host, won.port)}`);
    report(true, counts);
  }

  /** A stream offered on the direct path: served over it, or through the relay (`relay`) when that fails. */
  async serve(f: FrameOf<ServerFrame, "incoming">, s: AgentSession, on: On, relay: () => Promise<void>): Promise<void> {
    const path = this.paths.get(f.sessionId);
    if (f.dialer === "guest") return this.await(f, s, path, on, relay);
    let conn: Conn | Error;
    if (!path?.addr) conn = new Error("no direct path to the guest");
    else
      conn = await dialDirect(path.addr, f.direct!, { ...this.dialOptions(s), patient: true }).catch((e: unknown) =>
        e instanceof Error ? e : new Error(String(e)),
      );
    if (!(conn instanceof Error) && this.paths.get(f.sessionId) !== path) {
      cutBoth(conn);
      s.settingUp--;
      return on.onFailed("the session ended");
    }
    if (conn instanceof Error) {
      // Later streams go through the relay (the coordinator hears it now); this one too, unseen by the guest's client.
      if (path) path.addr = undefined;
      log.warn(`stream ${f.streamId}: the direct path failed (${conn.message}); through the coordinator instead`);
      this.reports.add(f.sessionId, { streamId: f.streamId, state: "failed", reason: conn.message.slice(0, 200) });
      return relay();
    }
    s.streams.add(conn.raw);
    conn.raw.data.onClose = (x) => s.streams.delete(x);
    this.adopt(f, s, conn.inner, on);
  }

  /** The guest could not reach this agent for a stream it dials (--direct-listen): the stream goes through the relay. */
  fallback(streamId: string): void {
    this.acceptor?.cancel(streamId)?.fallback();
  }

  forget(sessionId: string): void {
    this.paths.delete(sessionId);
    this.acceptor?.forbidProbe(probeToken(sessionId));
  }

  stop(): void {
    this.acceptor?.stop();
  }

  /** --direct-listen: the guest dials this agent with the stream's direct token; until then the stream waits here. */
  private await(
    f: FrameOf<ServerFrame, "incoming">,
    s: AgentSession,
    path: Path | undefined,
    on: On,
    relay: () => Promise<void>,
  ): void {
    if (!this.acceptor || !path) return void relay();
    this.acceptor.expect(f.direct!, f.streamId, pin(s), {
      take: (inner) => {
        s.streams.add(inner);
        this.adopt(f, s, inner, on);
      },
      gone: () => this.paths.get(f.sessionId) !== path,
      fallback: () => void relay(),
      fail: (why) => {
        s.settingUp--;
        on.onFailed(why);
      },
    });
  }

  /**
   * A verified direct channel is the session's: cut at its end. The coordinator hears that it is up and when
   * it ends (it relays none of its bytes; the streams inside are reported by session-channels.ts).
   */
  private adopt(f: FrameOf<ServerFrame, "incoming">, s: AgentSession, inner: Socket<End>, on: On): void {
    s.settingUp--;
    s.streams.add(inner);
    inner.data.onClose = (x) => {
      s.streams.delete(x);
      this.reports.add(f.sessionId, { streamId: f.streamId, state: "closed" });
    };
    this.reports.add(f.sessionId, { streamId: f.streamId, state: "open" });
    on.onVerified(inner);
  }

  private path(sessionId: string): Path {
    let p = this.paths.get(sessionId);
    if (!p) this.paths.set(sessionId, (p = { hinted: false }));
    return p;
  }

  private dialOptions(s: AgentSession): DirectDialOptions {
    return { tls: this.o.tls, isServer: true, peerRole: "guest", pin: pin(s), timeoutMs: this.o.dialTimeoutMs };
  }
}

/** The guest key a session was approved for, and its checked-certificate cache. */
function pin(s: AgentSession): PeerPin {
  return { peerSpki: s.frame.guest.spki, checked: s };
}
