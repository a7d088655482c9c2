// The coordinator's part in the direct path: it relays each side's signed hints (it cannot forge one:
// wire/hints.ts), keeps which path a session's new streams take, and audits every step. A direct
// stream is still opened and audited here before either side learns its token; its bytes are the
// agent's report at its close, and a failed direct dial falls back to the relay tokens issued with it.
import { randomBytes } from "node:crypto";
import { RefusedError } from "../errors.ts";
import type { FrameOf, ClientFrame } from "../wire/protocol.ts";
import { STREAM_TOKEN_BYTES } from "../wire/protocol.ts";
import type { Hint } from "../wire/hints.ts";
import type { AuditLog } from "../audit/log.ts";
import type { Peer, Session } from "./state.ts";
import type { Splicer, Stream } from "./splice.ts";
import { metrics } from "./metrics.ts";

type CF<T extends ClientFrame["t"]> = FrameOf<ClientFrame, T>;

/** A direct stream the agent has not reported on (open, closed or failed) within this is ended. */
const REPORT_TIMEOUT_MS = 30_000;

interface PathState {
  path: "direct" | "relay";
  hinted: boolean;
  /** The agent connection that proved the path: a reconnected agent has forgotten it, so it no longer counts. */
  agent?: Peer;
}

const paths = new WeakMap<Session, PathState>();

/** The path a session's new streams take. */
export function pathOf(s: Session): "direct" | "relay" {
  const st = paths.get(s);
  return st?.path === "direct" && st.agent === s.share.agent ? "direct" : "relay";
}

export interface DirectBookOptions {
  audit: AuditLog;
  splicer: Splicer;
  actors(s: Session): Record<string, unknown>;
  session(id: string): Session | undefined;
  /** The idle limit: a direct stream's activity must be reported well within it. */
  idleTimeoutMs: number;
  /** Test only (TESSERA_TEST_INJECT_HINT): a hint this coordinator adds to every guest's list, to prove the agent refuses it. */
  injectHint?: Hint;
}

export class DirectBook {
  private readonly unreported = new Map<Stream, ReturnType<typeof setTimeout>>();

  constructor(private readonly o: DirectBookOptions) {}

  /** The guest's signed hints: audited, then relayed unchanged to the session's agent (once a session). */
  hints(peer: Peer, f: CF<"hints">): void {
    const s = this.o.session(f.sessionId);
    if (!s || s.guest !== peer) throw new RefusedError("no_session", `no session "${f.sessionId}" belongs to this guest`);
    const st = state(s);
    if (st.hinted) throw new RefusedError("limit", "direct-path hints were already offered for this session");
    st.hinted = true;
    this.o.audit.append("direct.hints", { ...this.o.actors(s), offered: f.hints.length, injected: this.o.injectHint ? true : undefined });
    const relayed = this.o.injectHint ? { ...f, hints: [this.o.injectHint, ...f.hints] } : f;
    s.share.agent?.ch.send({ ...relayed, t: "hints" });
  }

  /** The agent's probe outcome: the session's new streams go direct from now on, or stay on the relay. */
  probed(peer: Peer, f: CF<"direct">): void {
    const s = this.served(peer, f.sessionId);
    const st = state(s);
    st.path = f.ok ? "direct" : "relay";
    st.agent = peer;
    const { t: _t, sessionId: _s, ...counts } = f;
    this.o.audit.append("direct.probe", { ...this.o.actors(s), ...counts });
  }

  /** A fresh token for the agent to present on its direct connection, if the session is on the direct path. */
  token(s: Session): string | undefined {
    return pathOf(s) === "direct" ? randomBytes(STREAM_TOKEN_BYTES).toString("base64url") : undefined;
  }

  /**
   * Sends a direct stream's frames once its opening is on disk (no side knows the direct token before),
   * and bounds the wait for the agent's report.
   */
  offer(s: Session, stream: Stream, t: { agentToken: string; guestToken: string; direct: string; ref: string }, durable: Promise<void>): void {
    const timer = setTimeout(() => this.o.splicer.end(stream, "the agent did not report the direct stream in time"), REPORT_TIMEOUT_MS);
    this.unreported.set(stream, timer);
    durable.then(() => {
      if (stream.ended) return;
      const reportMs = Math.round(Math.min(10_000, Math.max(250, this.o.idleTimeoutMs / 4)));
      // The guest hears first, as it waits for the agent's connection (which it holds a moment if it comes first).
      s.guest?.ch.send({ t: "stream", sessionId: s.id, streamId: stream.id, token: t.guestToken, ref: t.ref, direct: t.direct });
      s.share.agent?.ch.send({ t: "incoming", sessionId: s.id, streamId: stream.id, token: t.agentToken, direct: t.direct, reportMs });
    }, () => this.o.splicer.end(stream, "the audit log could not record the stream"));
  }

  /** The agent's word on one of its direct streams. */
  report(peer: Peer, f: CF<"direct-stream">): void {
    const s = this.served(peer, f.sessionId);
    const stream = [...s.streams].find((st) => st.id === f.streamId);
    if (!stream || stream.ended) return;
    if (!stream.direct) return; // a relayed stream's counts are the splice's own
    if (f.state === "failed") return this.fallback(s, stream, f.reason);
    if (f.up !== undefined || f.down !== undefined) stream.reported = { up: f.up ?? 0, down: f.down ?? 0 };
    if (f.state === "closed") return this.o.splicer.end(stream, f.reason ?? "closed");
    this.reported(stream);
    stream.spliced = true;
  }

  private fallback(s: Session, stream: Stream, reason?: string): void {
    this.reported(stream);
    // The agent could not reach the guest: this stream takes its relay tokens, later ones the relay too.
    state(s).path = "relay";
    metrics.directFallbacks.inc();
    this.o.audit.append("stream.fallback", { ...this.o.actors(s), streamId: stream.id, reason: reason ?? "the direct dial failed" });
    this.o.splicer.relay(stream);
    s.guest?.ch.send({ t: "fallback", sessionId: s.id, streamId: stream.id });
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

  private served(peer: Peer, sessionId: string): Session {
    const s = this.o.session(sessionId);
    if (!s || s.share.agent !== peer) throw new RefusedError("no_session", `no session "${sessionId}" is served by you`);
    return s;
  }
}

function state(s: Session): PathState {
  let st = paths.get(s);
  if (!st) paths.set(s, (st = { path: "relay", hinted: false }));
  return st;
}
