// The agent's end of the direct path. It checks a guest's signed hints (wire/hints.ts) against the key
// the host approved, applies its deny list and cap (hint-check.ts), probes each allowed hint once with
// the session's end-to-end TLS, and dials only the address that proved to be the guest for the
// session's later streams; a stream whose direct dial fails goes through the relay instead.
import type { Socket } from "bun";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { ControlClient } from "../wire/control-client.ts";
import { hintsProblem, PROBE_OK, probeToken, type Hint } from "../wire/hints.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";
import type { InnerTls } from "../data/data-dial.ts";
import { connectData } from "../data/data-dial.ts";
import { cut, type End } from "../data/pipe.ts";
import { startVerified } from "../data/verified-stream.ts";
import { checkHints, isLoopbackAddr } from "./hint-check.ts";
import type { AgentSession } from "./agent.ts";

const log = logger("agent:direct");

/** How long one probe, or one stream's direct dial, may take before the hint counts as not working. */
export const DIRECT_DIAL_TIMEOUT_MS = 2_000;
/** How often live direct streams' byte counts go to the coordinator (its idle clock sees them), at most and at least. */
const REPORT_MAX_MS = 10_000;
const REPORT_MIN_MS = 250;
/** Most activity reports one session sends a tick: enough for the idle clock, bounded whatever the stream count. */
const REPORTS_PER_TICK = 8;

export interface DirectDialerOptions {
  client(): ControlClient | undefined;
  /** The inner TLS server's options, as on the relay: the agent dials, yet serves the end-to-end TLS. */
  tls: InnerTls;
  /** `--relay-only`: no hint is ever dialled. */
  relayOnly?: boolean;
  dialTimeoutMs?: number;
}

interface Path {
  /** The one address that proved to be this session's guest; undefined while probing or after a failure. */
  addr?: Hint;
  live: Set<Socket<End>>;
}

export class DirectDialer {
  private readonly paths = new Map<string, Path>();
  private reporter: ReturnType<typeof setInterval> | undefined;
  private reportMs = REPORT_MAX_MS;
  private readonly lastReported = new WeakMap<Socket<End>, number>();

  constructor(private readonly o: DirectDialerOptions) {}

  /** Reports as often as the coordinator asks (clamped), on one timer for every session. */
  private reportEvery(ms: number | undefined): void {
    const want = Math.min(REPORT_MAX_MS, Math.max(REPORT_MIN_MS, ms ?? REPORT_MAX_MS));
    if (this.reporter && want >= this.reportMs) return;
    clearInterval(this.reporter);
    this.reportMs = want;
    this.reporter = setInterval(() => this.reportActivity(), want);
    this.reporter.unref?.();
  }

  /** The guest's hints for a session this agent holds: checked, probed, and the outcome reported for the audit log. */
  async hints(f: FrameOf<ServerFrame, "hints">, s: AgentSession): Promise<void> {
    const report = (ok: boolean, counts: { dialled: number; refused: number; over: number }, reason?: string) =>
      this.o.client()?.send({ t: "direct", sessionId: f.sessionId, ok, offered: f.hints.length, ...counts, ...(reason ? { reason: reason.slice(0, 200) } : {}) });
    const none = { dialled: 0, refused: 0, over: 0 };
    if (this.o.relayOnly) return report(false, none, "the host runs with --relay-only");
    // One set of hints a session: each hint is dialled at most once, whatever is sent again.
    if (this.paths.has(f.sessionId)) return report(false, none, "hints were already offered for this session");
    const path: Path = { live: new Set() };
    this.paths.set(f.sessionId, path);
    const forged = hintsProblem(f, "guest", s.frame.guest.spki);
    if (forged) {
      log.warn(`session ${f.sessionId}: refused the direct-path hints: ${forged}; nothing was dialled`);
      return report(false, none, `refused: ${forged}`);
    }
    const v = checkHints(f.hints, { guestOnLoopback: isLoopbackAddr(s.frame.guest.addr) });
    if (v.refused.length) log.warn(`session ${f.sessionId}: ${v.refused.length} hint(s) refused by the deny list (${v.refused.slice(0, 3).map((r) => `${r.hint.host}: ${r.why}`).join("; ")})`);
    if (v.over) log.warn(`session ${f.sessionId}: ${v.over} hint(s) over the cap of ${v.dial.length} were not dialled`);
    const counts = { dialled: v.dial.length, refused: v.refused.length, over: v.over };
    if (!v.dial.length) return report(false, counts, "no hint may be dialled");
    // In parallel, each once; the first that proves to be the guest is the session's direct path.
    const why: string[] = [];
    const won = await firstOf(v.dial.map((h) => this.probe(h, s).then(() => h, (e: unknown) => {
      why.push(errorMessage(e));
      throw e;
    })));
    if (!this.paths.has(f.sessionId)) return;
    if (!won) {
      log.warn(`session ${f.sessionId}: no direct path (${why.join("; ")}); streams go through the coordinator`);
      return report(false, counts, `no hint reached the guest (${why.join("; ")})`);
    }
    path.addr = won;
    log.info(`session ${f.sessionId}: direct path to the guest at ${won.host}:${won.port}`);
    report(true, counts);
  }

  /** A stream offered on the direct path: served over it, or through the relay (`relay`) when the dial fails. */
  async serve(f: FrameOf<ServerFrame, "incoming">, s: AgentSession, on: { onVerified(inner: Socket<End>): void; onFailed(why: string): void }, relay: () => Promise<void>): Promise<void> {
    const path = this.paths.get(f.sessionId);
    let conn: { raw: Socket<End>; inner: Socket<End> } | Error;
    if (!path?.addr) conn = new Error("no direct path to the guest");
    else conn = await this.connect(path.addr, s, f.direct!).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
    if (!(conn instanceof Error) && this.paths.get(f.sessionId) !== path) {
      cutBoth(conn);
      s.settingUp--;
      return on.onFailed("the session ended");
    }
    if (conn instanceof Error) {
      // Later streams go through the relay (the coordinator hears it now); this one too, unseen by the guest's client.
      if (path) path.addr = undefined;
      log.warn(`stream ${f.streamId}: the direct path failed (${conn.message}); through the coordinator instead`);
      this.o.client()?.send({ t: "direct-stream", sessionId: f.sessionId, streamId: f.streamId, state: "failed", reason: conn.message.slice(0, 200) });
      return relay();
    }
    const { raw, inner } = conn;
    s.settingUp--;
    s.streams.add(raw);
    s.streams.add(inner);
    path!.live.add(inner);
    raw.data.onClose = (x) => s.streams.delete(x);
    inner.data.onClose = (x) => {
      s.streams.delete(x);
      path!.live.delete(inner);
      // The agent's counts are the stream's: the coordinator relayed none of these bytes.
      this.o.client()?.send({ t: "direct-stream", sessionId: f.sessionId, streamId: f.streamId, state: "closed", up: x.data.bytesRead, down: bytesSent(x) });
    };
    this.o.client()?.send({ t: "direct-stream", sessionId: f.sessionId, streamId: f.streamId, state: "open" });
    this.reportEvery(f.reportMs);
    (inner.data as End & { streamId?: string }).streamId = f.streamId;
    on.onVerified(inner);
  }

  forget(sessionId: string): void {
    this.paths.delete(sessionId);
  }

  stop(): void {
    clearInterval(this.reporter);
  }

  /** One probe: the end-to-end TLS with the guest's pinned key, then the guest's answer to the probe token. */
  private async probe(h: Hint, s: AgentSession): Promise<void> {
    const { raw, inner: sock } = await this.connect(h, s, probeToken(s.frame.sessionId).toString("base64url"));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no answer to the probe")), this.o.dialTimeoutMs ?? DIRECT_DIAL_TIMEOUT_MS);
      const answer = (got: Buffer) => {
        clearTimeout(timer);
        if (got.subarray(0, PROBE_OK.length).equals(PROBE_OK)) resolve();
        else reject(new Error("the guest did not answer the probe"));
      };
      const early = Buffer.concat(sock.data.early);
      if (early.length) return answer(early);
      // The answer is read here, not piped anywhere (see pipe.ts SocketSink).
      sock.data.sink = { feed: (c) => answer(Buffer.from(c)), drained() {}, ended: () => answer(Buffer.alloc(0)), gone: () => answer(Buffer.alloc(0)) };
    }).finally(() => cutBoth({ raw, inner: sock }));
  }

  /**
   * Dials a hint and runs the session's end-to-end TLS exactly as on the relay (the preamble with the
   * token, then the agent serves the TLS: data/verified-stream.ts), accepting the far end only with the
   * guest key this session was approved for. Resolves once verified.
   */
  private async connect(h: Hint, s: AgentSession, token: string): Promise<{ raw: Socket<End>; inner: Socket<End> }> {
    const ms = this.o.dialTimeoutMs ?? DIRECT_DIAL_TIMEOUT_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let conn: { raw: Socket<End>; inner: Socket<End> } | undefined;
    const where = `${h.host}:${h.port}`;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (conn) cutBoth(conn);
        reject(new Error(`${where} did not complete the guest's TLS within ${ms / 1000}s`));
      }, ms);
    });
    try {
      return await Promise.race([timeout, (async () => {
        const raw = await connectData(h).catch((e: unknown) => {
          throw new Error(`${where}: ${errorMessage(e)}`);
        });
        return new Promise<{ raw: Socket<End>; inner: Socket<End> }>((resolve, reject) => {
          const gone = () => reject(new Error(`${where} closed the connection before the guest's TLS was verified`));
          conn = startVerified(raw, {
            token, tls: this.o.tls, isServer: true, peerRole: "guest", peerSpki: s.frame.guest.spki, checked: s,
            onVerified: () => resolve(conn!),
            onRejected: (why) => reject(new Error(`${where}: ${why}`)),
            onClose: gone,
          });
          raw.data.onClose = gone;
        });
      })()]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Bytes moved on live direct streams since the last report, so the coordinator's idle clock sees them (bounded: REPORTS_PER_TICK a session a tick). */
  private reportActivity(): void {
    const c = this.o.client();
    if (!c) return;
    for (const [sessionId, path] of this.paths) {
      let sent = 0;
      for (const sock of path.live) {
        if (sent >= REPORTS_PER_TICK) break;
        const up = sock.data.bytesRead;
        const down = bytesSent(sock);
        if (this.lastReported.get(sock) === up + down) continue;
        this.lastReported.set(sock, up + down);
        const streamId = (sock.data as End & { streamId?: string }).streamId;
        if (streamId) c.send({ t: "direct-stream", sessionId, streamId, state: "open", up, down });
        sent++;
      }
    }
  }
}

/** The first promise to resolve, or undefined once all have rejected. */
function firstOf<T>(ps: Promise<T>[]): Promise<T | undefined> {
  return Promise.any(ps).catch(() => undefined);
}

/** A data connection and the TLS over it. */
function cutBoth(conn: { raw: Socket<End>; inner: Socket<End> }): void {
  cut(conn.inner);
  cut(conn.raw);
}

/** Bytes the agent sent the guest on a direct stream: what its target gave (a shell's stream has no peer socket). */
function bytesSent(inner: Socket<End>): number {
  return inner.data.peer?.data.bytesRead ?? inner.bytesWritten ?? 0;
}
