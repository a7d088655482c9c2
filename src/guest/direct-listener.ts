// The guest's end of the direct path: a listener the host's agent dials (the guest's signed hints say
// where), on the one acceptor both sides use (data/direct-accept.ts): the agent presents the stream's
// token and serves the end-to-end TLS, and only the host's approved key gets the waiting stream. When
// the host listens (`share --direct-listen`) the guest checks and probes its signed hints and dials it.
import type { Socket } from "bun";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { ClientFrame, FrameOf, ServerFrame } from "../wire/protocol.ts";
import type { End } from "../data/pipe.ts";
import type { InnerTls } from "../data/data-dial.ts";
import { DirectAcceptor, type DirectWaiter, type PeerPin } from "../data/direct-accept.ts";
import { hintsProblem, probeToken, signHints, type Hint } from "../wire/hints.ts";
import { StreamReports } from "../wire/stream-reports.ts";
import { cutBoth, dialDirect, firstProbe, type DirectDialOptions } from "../data/direct-dial.ts";
// The agent's deny list and cap, applied to the host's hints as well: one rule for what a side dials.
import { checkHints } from "../host/hint-check.ts";

const log = logger("join:direct");

export type { DirectWaiter } from "../data/direct-accept.ts";

export interface DirectListenerOptions {
  sessionId: string;
  /** The inner TLS client's options, as on the relay (stream-context.ts guestTls). */
  tls: InnerTls;
  /** Where the session keeps its latest TLS ticket (shared with the relay streams). */
  resume?: { ticket?: Buffer };
  hostSpki: string;
  /** The host certificate already checked (shared with the relay streams). */
  checked: { checked?: Buffer };
  /** Every live socket of the session, cut at its end. */
  socks: Set<Socket<End>>;
  /** Sends on the current control connection. */
  send(f: ClientFrame): void;
  /** The coordinator is reached on loopback: a loopback hint of the host's may be dialled. */
  coordinatorOnLoopback: boolean;
  /** This guest proved the host's hint (`share --direct-listen`): the session's channel may go direct now. */
  onProven?(): void;
}

export class DirectListener {
  private readonly acceptor: DirectAcceptor;
  private readonly pin: PeerPin;
  /** The host's address that proved to be the host (`share --direct-listen`); streams it is to be dialled for go there. */
  private hostAddr: Hint | undefined;
  private hostHinted = false;
  private readonly reports: StreamReports;

  constructor(private readonly o: DirectListenerOptions) {
    this.pin = { peerSpki: o.hostSpki, checked: o.checked };
    this.reports = new StreamReports((f) => o.send(f));
    this.acceptor = new DirectAcceptor({
      tls: o.tls,
      isServer: false,
      peerRole: "host",
      resume: o.resume,
      socks: o.socks,
    });
  }

  /**
   * Listens, and offers the addresses `hints` gives for the port as hints signed with this session's key
   * (`keyPem`, which the agent pins), so the coordinator that relays them cannot change them.
   */
  offer(keyPem: string, hints: (port: number) => Hint[]): void {
    const port = this.listen();
    this.o.send({ t: "hints", ...signHints(keyPem, this.o.sessionId, "guest", hints(port)) });
  }

  /** Listens on every interface, at a port the system picks; the agent's probe is answered from then on. */
  private listen(): number {
    const port = this.acceptor.listen();
    this.acceptor.allowProbe(probeToken(this.o.sessionId), this.pin);
    return port;
  }

  /**
   * A stream the coordinator put on the direct path: `w` waits for the agent's connection with its
   * token, or (dialer "guest") gets the connection this guest makes to the host's proven address.
   */
  expect(f: FrameOf<ServerFrame, "stream">, w: DirectWaiter): void {
    if (f.dialer === "guest") return void this.dialHost(f, w);
    this.acceptor.expect(f.direct!, f.streamId, this.pin, w);
  }

  /** The host's signed hints (`share --direct-listen`): checked as the agent checks ours, probed once each, the outcome reported. */
  async hostHints(f: FrameOf<ServerFrame, "hints">): Promise<void> {
    const report = (ok: boolean, counts: { dialled: number; refused: number; over: number }, reason?: string) =>
      this.o.send({
        t: "direct",
        sessionId: f.sessionId,
        ok,
        offered: f.hints.length,
        ...counts,
        ...(reason ? { reason: reason.slice(0, 200) } : {}),
      });
    const none = { dialled: 0, refused: 0, over: 0 };
    if (f.sessionId !== this.o.sessionId || this.hostHinted)
      return report(false, none, "hints were already offered for this session");
    this.hostHinted = true;
    const forged = hintsProblem(f, "host", this.o.hostSpki);
    if (forged) {
      log.warn(`refused the host's direct-path hints: ${forged}; nothing was dialled`);
      return report(false, none, `refused: ${forged}`);
    }
    const v = checkHints(f.hints, { guestOnLoopback: this.o.coordinatorOnLoopback });
    const counts = { dialled: v.dial.length, refused: v.refused.length, over: v.over };
    if (!v.dial.length) return report(false, counts, "no hint may be dialled");
    const { won, why } = await firstProbe(v.dial, this.o.sessionId, this.dialOptions());
    if (!won) return report(false, counts, `no hint reached the host (${why.join("; ")})`);
    this.hostAddr = won;
    // The report first: the coordinator then routes the channel asked for at once onto the direct path.
    report(true, counts);
    this.o.onProven?.();
  }

  /** Dials the host for a stream; a failure is reported, and the stream goes through the relay unseen. */
  private async dialHost(f: FrameOf<ServerFrame, "stream">, w: DirectWaiter): Promise<void> {
    const addr = this.hostAddr;
    const conn = addr
      ? await dialDirect(addr, f.direct!, { ...this.dialOptions(), patient: true }).catch(
          (e: unknown) => new Error(errorMessage(e)),
        )
      : new Error("no direct path to the host");
    if (conn instanceof Error) {
      this.hostAddr = undefined;
      log.debug(`stream ${f.streamId}: the direct path failed (${conn.message}); through the coordinator instead`);
      this.reports.add(f.sessionId, { streamId: f.streamId, state: "failed", reason: conn.message.slice(0, 200) });
      return w.fallback();
    }
    this.o.socks.add(conn.raw);
    this.o.socks.add(conn.inner);
    conn.raw.data.onClose = (x) => this.o.socks.delete(x);
    conn.inner.data.onClose = (x) => this.o.socks.delete(x);
    if (w.gone()) return cutBoth(conn);
    w.take(conn.inner);
  }

  private dialOptions(): DirectDialOptions {
    return { tls: this.o.tls, isServer: false, peerRole: "host", pin: this.pin, resume: this.o.resume };
  }

  /** The coordinator says the agent could not reach us for this stream: it goes through the relay. */
  fallback(streamId: string): void {
    this.acceptor.cancel(streamId)?.fallback();
  }

  stop(): void {
    this.acceptor.stop();
  }
}
