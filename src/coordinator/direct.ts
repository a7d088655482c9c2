// The coordinator's part in the direct path: it relays each side's signed hints (it cannot forge one:
// wire/hints.ts), keeps which path a session's new streams take, and audits every step. A direct
// stream is still opened and audited here before either side learns its token; its bytes are the
// agent's report at its close, and a failed direct dial falls back to the relay tokens issued with it.
import { randomBytes } from "node:crypto";
import { RefusedError } from "../errors.ts";
import type { FrameOf, ClientFrame, StreamReport } from "../wire/protocol.ts";
import { STREAM_TOKEN_BYTES } from "../wire/protocol.ts";
import type { Hint } from "../wire/hints.ts";
import type { AuditLog } from "../audit/log.ts";
import type { Peer, Session } from "./state.ts";
import type { Splicer, Stream } from "./splice.ts";
import { metrics } from "./metrics.ts";

type CF<T extends ClientFrame["t"]> = FrameOf<ClientFrame, T>;

/** A direct stream the agent has not reported on (open, closed or failed) within this is ended. */
const REPORT_TIMEOUT_MS = 30_000;
/** How long a direct stream ended here waits for the agent's final counts before its line takes the last ones. */
const FINAL_WAIT_MS = 2_000;

interface Final {
  stream: Stream;
  s: Session;
  agent: Peer;
  write(): void;
  timer: ReturnType<typeof setTimeout>;
}

interface PathState {
  /** The agent proved the guest's hint (it dials the guest), with this agent connection: a reconnected agent has forgotten it. */
  agentDials?: Peer;
  /** The guest proved the host's hint (`share --direct-listen`: the guest dials), with these connections. */
  guestDials?: { guest: Peer; agent: Peer };
  hinted: boolean;
  hostHinted: boolean;
}

const paths = new WeakMap<Session, PathState>();

/** Who dials a session's new direct streams (the agent first, as it never listens by default), or undefined: the relay. */
function dialerOf(s: Session): "agent" | "guest" | undefined {
  const st = paths.get(s);
  if (!st || !s.share.agent) return undefined;
  if (st.agentDials === s.share.agent) return "agent";
  if (st.guestDials && st.guestDials.agent === s.share.agent && st.guestDials.guest === s.guest) return "guest";
  return undefined;
}

/** The path a session's new streams take. */
export function pathOf(s: Session): "direct" | "relay" {
  return dialerOf(s) ? "direct" : "relay";
}

/**
 * The session's agent is gone: the path it or the guest proved was that connection's. The guest hears its
 * streams go through the relay, so it stops waiting for a direct channel nobody will dial.
 */
export function agentGone(s: Session): void {
  const st = paths.get(s);
  if (st) st.agentDials = st.guestDials = undefined;
  s.guest?.ch.send({ t: "path", sessionId: s.id, path: "relay" });
}

/**
 * The session's agent is back on a new connection: the guest hears it now, so it opens a channel again
 * (through the relay; an agent that kept its direct path says so next, see probed, and a direct one follows).
 */
export function agentBack(s: Session): void {
  s.guest?.ch.send({ t: "path", sessionId: s.id, path: pathOf(s) });
}

export interface DirectBookOptions {
  audit: AuditLog;
  splicer: Splicer;
  actors(s: Session): Record<string, unknown>;
  session(id: string): Session | undefined;
  /** Whether `peer` was the agent of session `id`, which ended here lately (its late reports are taken quietly). */
  servedLately(id: string, peer: Peer): boolean;
  /** The idle limit: a direct stream's activity must be reported well within it. */
  idleTimeoutMs: number;
  /** Test only (TESSERA_TEST_INJECT_HINT): a hint this coordinator adds to every guest's list, to prove the agent refuses it. */
  injectHint?: Hint;
}

export class DirectBook {
  private readonly unreported = new Map<Stream, ReturnType<typeof setTimeout>>();
  /** Direct streams the guest dials (`share --direct-listen`). */
  private readonly guestDialled = new WeakSet<Stream>();
  /** Direct streams the agent said closed: their counts are final. */
  private readonly agentClosed = new WeakSet<Stream>();
  /** Direct streams ended here (session end, revoke, the guest away) whose close line waits for the agent's final counts, by stream id. */
  private readonly finals = new Map<string, Final>();
  /** Per session: finals outstanding, and what runs once there are none. */
  private readonly settling = new Map<Session, { n: number; done?: () => void }>();

  constructor(private readonly o: DirectBookOptions) {}

  /**
   * A side's signed hints, relayed unchanged to the other side (once a session and side): the guest's to
   * the agent, and with `share --direct-listen` the agent's to the guest. Audited with their count.
   */
  hints(peer: Peer, f: CF<"hints">): void {
    const s = this.o.session(f.sessionId);
    const from = s?.guest === peer ? "guest" : s && s.share.agent === peer ? "host" : undefined;
    if (!s || !from) throw new RefusedError("no_session", `no session "${f.sessionId}" is yours`);
    const st = state(s);
    if (from === "guest" && st.hinted)
      throw new RefusedError("limit", "direct-path hints were already offered for this session");
    // A reconnected agent offers its hints again with the session's frame: the guest has probed them once already.
    if (from === "host" && st.hostHinted) return;
    if (from === "guest") st.hinted = true;
    else st.hostHinted = true;
    this.o.audit.append("direct.hints", {
      ...this.o.actors(s),
      from,
      offered: f.hints.length,
      injected: this.o.injectHint ? true : undefined,
    });
    const relayed = this.o.injectHint ? { ...f, hints: [this.o.injectHint, ...f.hints] } : f;
    (from === "guest" ? s.share.agent : s.guest)?.ch.send({ ...relayed, t: "hints" });
  }

  /** A side's probe outcome: the session's new streams go direct from now on (that side dials), or stay on the relay. */
  probed(peer: Peer, f: CF<"direct">): void {
    const s = this.o.session(f.sessionId);
    const by = s?.share.agent === peer ? "host" : s && s.guest === peer ? "guest" : undefined;
    if (!s || !by) throw new RefusedError("no_session", `no session "${f.sessionId}" is yours`);
    const st = state(s);
    // Each side's outcome is its own: the agent's failed probe does not undo the guest's proof (--direct-listen).
    if (by === "host") {
      st.agentDials = f.ok ? peer : undefined;
      // The guest learns it now, not at its next stream: its channel through the relay gives way to a direct one.
      if (f.ok) s.guest?.ch.send({ t: "path", sessionId: s.id, path: "direct" });
    } else st.guestDials = f.ok && s.share.agent ? { guest: peer, agent: s.share.agent } : undefined;
    const { t: _t, sessionId: _s, ...counts } = f;
    this.o.audit.append("direct.probe", { ...this.o.actors(s), by, ...counts });
  }

  /**
   * How often the agent reports the bytes of streams whose counts are its own: the idle clock needs them, and
   * live views (admin, the host's) show them, so at least once a second; a report only lists what moved.
   */
  get reportMs(): number {
    return Math.round(Math.min(1_000, Math.max(250, this.o.idleTimeoutMs / 4)));
  }

  /** A fresh token for the side that dials to present on its direct connection, if the session is on the direct path. */
  route(s: Session): { token: string; dialer?: "guest" } | undefined {
    const dialer = dialerOf(s);
    if (!dialer) return undefined;
    return { token: randomBytes(STREAM_TOKEN_BYTES).toString("base64url"), ...(dialer === "guest" ? { dialer } : {}) };
  }

  /**
   * Sends a direct stream's frames once its opening is on disk (no side knows the direct token before),
   * and bounds the wait for the agent's report.
   */
  offer(
    s: Session,
    stream: Stream,
    t: {
      agentToken: string;
      guestToken: string;
      direct: { token: string; dialer?: "guest" };
      ref: string;
      channel?: boolean;
    },
    durable: Promise<void>,
  ): void {
    if (t.direct.dialer) this.guestDialled.add(stream);
    const d = { direct: t.direct.token, ...(t.direct.dialer ? { dialer: t.direct.dialer } : {}) };
    const timer = setTimeout(
      () => this.o.splicer.end(stream, "the agent did not report the direct stream in time"),
      REPORT_TIMEOUT_MS,
    );
    this.unreported.set(stream, timer);
    durable.then(
      () => {
        if (stream.ended) return;
        const reportMs = this.reportMs;
        // The guest hears first, as it waits for the agent's connection (which it holds a moment if it comes first).
        s.guest?.ch.send({ t: "stream", sessionId: s.id, streamId: stream.id, token: t.guestToken, ref: t.ref, ...d });
        s.share.agent?.ch.send({
          t: "incoming",
          sessionId: s.id,
          streamId: stream.id,
          token: t.agentToken,
          ...d,
          reportMs,
          ...(t.channel ? { channel: true as const } : {}),
        });
      },
      () => this.o.splicer.end(stream, "the audit log could not record the stream"),
    );
  }

  /** The agent's word on its direct streams (and the guest's, when it could not dial the host for one), in order. */
  report(peer: Peer, f: CF<"direct-stream">): void {
    // Final counts of streams ended here: their session may be over already.
    const rest = f.reports.filter((r) => !this.finalReport(peer, f.sessionId, r));
    if (!rest.length) return;
    f = { ...f, reports: rest };
    const s = this.o.session(f.sessionId);
    // Its session ended here before the agent heard (its direct channel's last counts): nothing to do.
    if (!s && this.o.servedLately(f.sessionId, peer)) return;
    const guest = !!s && s.guest === peer && f.reports.every((r) => r.state === "failed");
    if (!s || (s.share.agent !== peer && !guest))
      throw new RefusedError("no_session", `no session "${f.sessionId}" is served by you`);
    const byId = new Map([...s.streams].map((st) => [st.id, st]));
    for (const r of f.reports) this.one(s, byId.get(r.streamId), r, guest);
  }

  private one(s: Session, stream: Stream | undefined, f: StreamReport, guest: boolean): void {
    if (!stream || stream.ended) return;
    if (!byReport(stream)) return; // a relayed stream's counts are the splice's own
    if (stream.kind === "mux") {
      // Only the agent speaks for a stream inside a channel; "failed": it never reached the target.
      if (guest) return;
      if (f.up !== undefined || f.down !== undefined) stream.reported = { up: f.up ?? 0, down: f.down ?? 0 };
      if (f.state === "open") return;
      this.agentClosed.add(stream);
      // A reason is the agent's word that the stream could not be served (its target refused): the guest's
      // client only sees its connection close, so the guest hears why.
      if (f.reason) s.guest?.ch.send({ t: "refused", sessionId: s.id, streamId: stream.id, reason: f.reason });
      return this.o.splicer.end(stream, f.reason ?? "closed");
    }
    // Only the side that dials a stream can say it failed.
    if (f.state === "failed")
      return guest === this.guestDialled.has(stream) ? this.fallback(s, stream, f.reason) : undefined;
    if (f.up !== undefined || f.down !== undefined) stream.reported = { up: f.up ?? 0, down: f.down ?? 0 };
    if (f.state === "closed") {
      this.agentClosed.add(stream);
      return this.o.splicer.end(stream, f.reason ?? "closed");
    }
    this.reported(stream);
    stream.spliced = true;
  }

  private fallback(s: Session, stream: Stream, reason?: string): void {
    this.reported(stream);
    // The dialling side could not reach the other: this stream takes its relay tokens, later ones the relay too.
    const st = state(s);
    const byGuest = this.guestDialled.has(stream);
    if (byGuest) st.guestDials = undefined;
    else st.agentDials = undefined;
    metrics.directFallbacks.inc();
    this.o.audit.append("stream.fallback", {
      ...this.o.actors(s),
      streamId: stream.id,
      reason: reason ?? "the direct dial failed",
    });
    this.o.splicer.relay(stream);
    // The side that waits for the connection hears it; the dialling side goes to the relay by itself.
    (byGuest ? s.share.agent : s.guest)?.ch.send({ t: "fallback", sessionId: s.id, streamId: stream.id });
  }

  /**
   * A direct stream ended here, not by the agent's report: the agent cuts it as it hears (session end,
   * revoke) or sees its guest go, and reports its final counts, which `write` then records. Without an
   * agent there is nothing to wait for: false, write now. A stream the agent has not reported yet is waited
   * for too: a short one (a request and its answer) can end, with its session, inside the agent's report
   * batch, and its line would say 0 bytes (the agent's "open" and "closed" then come together).
   */
  awaitFinal(stream: Stream, s: Session | undefined, write: () => void): boolean {
    const agent = s?.share.agent;
    if (!byReport(stream) || this.agentClosed.has(stream) || !s || !agent) return false;
    const timer = setTimeout(() => this.settle(stream.id), FINAL_WAIT_MS);
    this.finals.set(stream.id, { stream, s, agent, write, timer });
    const st = this.settling.get(s) ?? { n: 0 };
    st.n++;
    this.settling.set(s, st);
    return true;
  }

  /** Runs `then` once the session's direct streams ended here have their lines (at once if none wait). */
  afterFinals(s: Session, then: () => void): void {
    const st = this.settling.get(s);
    if (!st) return then();
    st.done = then;
  }

  private finalReport(peer: Peer, sessionId: string, r: StreamReport): boolean {
    const f = this.finals.get(r.streamId);
    if (!f || f.agent !== peer || f.s.id !== sessionId) return false;
    if (r.up !== undefined || r.down !== undefined) f.stream.reported = { up: r.up ?? 0, down: r.down ?? 0 };
    if (r.state !== "open") this.settle(r.streamId);
    return true;
  }

  /** Writes every waiting line now, with the counts known (shutdown). */
  settleAll(): void {
    for (const id of [...this.finals.keys()]) this.settle(id);
  }

  private settle(streamId: string): void {
    const f = this.finals.get(streamId);
    if (!f) return;
    this.finals.delete(streamId);
    clearTimeout(f.timer);
    f.write();
    const st = this.settling.get(f.s);
    if (!st || --st.n > 0) return;
    this.settling.delete(f.s);
    st.done?.();
  }

  /** A stream ended: its report timer goes. */
  ended(stream: Stream): void {
    this.reported(stream);
  }

  private reported(stream: Stream): void {
    const t = this.unreported.get(stream);
    if (t) clearTimeout(t);
    this.unreported.delete(stream);
  }
}

/** A stream whose byte counts are the agent's reports: a direct one, or one inside a data channel. */
function byReport(stream: Stream): boolean {
  return !!stream.direct || stream.kind === "mux";
}

function state(s: Session): PathState {
  let st = paths.get(s);
  if (!st) paths.set(s, (st = { hinted: false, hostHinted: false }));
  return st;
}
