// The agent's data channels: a verified channel connection (relayed or direct) becomes a MuxChannel with
// its ChannelServer, and the streams the coordinator opens on it are admitted there. Each stream's reports
// go back on the control connection that opened it: a channel outlives a move to another coordinator node,
// and the streams opened on the old node are that node's to write in its audit log.
import type { Duplex } from "node:stream";
import type { Socket } from "bun";
import { logger } from "../log.ts";
import type { MuxChannel } from "../data/mux.ts";
import { channelOver } from "../data/channel-socket.ts";
import { MuxDuplex } from "../data/mux-duplex.ts";
import type { End } from "../data/pipe.ts";
import type { ControlClient } from "../wire/control-client.ts";
import type { StreamReport } from "../wire/protocol.ts";
import { StreamReports } from "../wire/stream-reports.ts";
import { MuxReset } from "../wire/mux-frames.ts";
import { ChannelServer } from "./channel-server.ts";

const log = logger("host:channels");

/** Byte reports of open streams at most this often, at least this seldom (the coordinator asks within). */
const REPORT_MIN_MS = 250;
const REPORT_MAX_MS = 1_000;

interface Held {
  mux: MuxChannel;
  server: ChannelServer;
  sessionId: string;
}

export class SessionChannels {
  private readonly byId = new Map<string, Held>();
  /**
   * Channels offered and not yet verified here, with what waits for them: the guest's end of the TLS may
   * finish first, and a stream's word can then arrive before this side's handshake does.
   */
  private readonly settingUp = new Map<string, ((h: Held | undefined) => void)[]>();
  /** The control connection each admitted stream was opened on (its reports go there). */
  private readonly openedOn = new Map<string, ControlClient>();
  private readonly reports = new WeakMap<ControlClient, StreamReports>();
  private reporter: ReturnType<typeof setInterval> | undefined;
  private reportMs = REPORT_MAX_MS;
  private readonly lastReported = new Map<string, number>();

  constructor(private readonly current: () => ControlClient | undefined) {}

  /** A channel was offered: streams named for it wait until it is adopted or failed. */
  expect(channelId: string): void {
    if (!this.settingUp.has(channelId)) this.settingUp.set(channelId, []);
  }

  /** The offered channel never came up (its dial or TLS failed): what waited for it is refused. */
  failed(channelId: string): void {
    const waiting = this.settingUp.get(channelId);
    this.settingUp.delete(channelId);
    for (const w of waiting ?? []) w(undefined);
  }

  /** A verified channel connection of session `sessionId`: from now on its bytes are the channel's. */
  adopt(channelId: string, sessionId: string, inner: Socket<End>): void {
    const mux = channelOver(inner, "guest", {
      role: "acceptor",
      onClose: (err) => {
        this.byId.delete(channelId);
        if (err) log.debug(`channel ${channelId} closed: ${err.message}`);
      },
    });
    const server = new ChannelServer(mux, { report: (r) => this.report(sessionId, r) });
    this.byId.set(channelId, { mux, server, sessionId });
    const waiting = this.settingUp.get(channelId);
    this.settingUp.delete(channelId);
    for (const w of waiting ?? []) w(this.byId.get(channelId));
  }

  /** Whether a channel is up or on its way. */
  has(channelId: string): boolean {
    return this.byId.has(channelId) || this.settingUp.has(channelId);
  }

  /** Runs `fn` with the channel once it is up (at once if it is), or with undefined if it is gone or failed. */
  private with(channelId: string, fn: (h: Held | undefined) => void): void {
    const waiting = this.settingUp.get(channelId);
    if (waiting) waiting.push(fn);
    else fn(this.byId.get(channelId));
  }

  /**
   * Stream `mux` of channel `via` reaches `dest` now (the coordinator audited its opening on `client`);
   * `gone` when the channel is not (or never came) up.
   */
  admit(
    f: { via: string; mux: number; streamId: string; reportMs?: number },
    client: ControlClient,
    dest: { host: string; port: number; label: string },
    gone: () => void,
  ): void {
    this.with(f.via, (held) => {
      if (!held) return gone();
      this.openedOn.set(f.streamId, client);
      this.reportEvery(f.reportMs);
      held.server.admit(f.mux, f.streamId, dest);
    });
  }

  /** Stream `mux` of channel `via` goes to a service (the host's shell) as a node stream. */
  admitService(
    f: { via: string; mux: number; streamId: string; reportMs?: number },
    client: ControlClient,
    serve: (d: Duplex) => void,
    gone: () => void,
  ): void {
    this.with(f.via, (held) => {
      // Named twice: the live stream stays as it is (a refusal would reset it); only the second word fails.
      if (held?.mux.stream(f.mux)?.admitted)
        return this.report(held.sessionId, { streamId: f.streamId, state: "failed", reason: "opened twice" });
      const stream = held?.mux.accept(f.mux);
      if (!held || !stream) return gone();
      this.openedOn.set(f.streamId, client);
      this.reportEvery(f.reportMs);
      void stream.whenClosed().then(() =>
        this.report(held.sessionId, {
          streamId: f.streamId,
          state: "closed",
          up: stream.bytesIn,
          down: stream.bytesOut,
        }),
      );
      stream.ack();
      serve(new MuxDuplex(stream));
    });
  }

  /** The stream will not be served (policy, scope): what the guest sent for it is dropped, and it is told. */
  refuse(via: string | undefined, mux: number | undefined): void {
    if (via === undefined || mux === undefined) return;
    this.byId.get(via)?.mux.refuse(mux, MuxReset.refused);
  }

  /** Every channel of the session ends (its end, the agent leaving): each stream reports its bytes. */
  closeSession(sessionId: string): void {
    for (const h of [...this.byId.values()]) if (h.sessionId === sessionId) h.server.close("the session ended");
  }

  stop(): void {
    clearInterval(this.reporter);
    for (const h of [...this.byId.values()]) h.server.close("the agent stopped");
  }

  private report(sessionId: string, r: StreamReport): void {
    const on = this.openedOn.get(r.streamId);
    const client = on && !on.ch.closed ? on : this.current();
    if (r.state !== "open") {
      this.openedOn.delete(r.streamId);
      this.lastReported.delete(r.streamId);
    }
    if (!client) return;
    let reports = this.reports.get(client);
    if (!reports) this.reports.set(client, (reports = new StreamReports((f) => client.send(f))));
    reports.add(sessionId, r);
  }

  /** Reports as often as the coordinator asks (clamped), on one timer for every channel. */
  private reportEvery(ms: number | undefined): void {
    const want = Math.min(REPORT_MAX_MS, Math.max(REPORT_MIN_MS, ms ?? REPORT_MAX_MS));
    if (this.reporter && want >= this.reportMs) return;
    clearInterval(this.reporter);
    this.reportMs = want;
    this.reporter = setInterval(() => this.reportActivity(), want);
    this.reporter.unref?.();
  }

  /** Bytes moved on open streams since the last report, so the coordinator's idle clock and views see them. */
  private reportActivity(): void {
    for (const h of this.byId.values())
      for (const r of h.server.openReports()) {
        const n = (r.up ?? 0) + (r.down ?? 0);
        if (this.lastReported.get(r.streamId) === n) continue;
        this.lastReported.set(r.streamId, n);
        this.report(h.sessionId, r);
      }
  }
}
