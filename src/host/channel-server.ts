// The agent's end of a session's data channel (issue 29): the guest's bytes for a stream wait in the
// channel until the coordinator's word admits it (`admit`, after the opening is audited); only then does
// the agent connect to the target. Each stream's end is reported with the bytes it moved, which are
// the session's counts. One object per channel; a stream's state lives on its MuxStream.
import type { Socket } from "bun";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { MuxChannel } from "../data/mux.ts";
import { MUX_SOCKET_HANDLERS, bindStream, newMuxEnd, type MuxEnd } from "../data/mux-socket.ts";
import type { MuxStream } from "../data/mux-stream.ts";
import { MuxReset, resetName } from "../wire/mux-frames.ts";
import type { StreamReport } from "../wire/protocol.ts";

const log = logger("host:channel");

export interface ChannelServerOptions {
  /** A stream ended (or never started): its report for the coordinator, with the agent's byte counts. */
  report(r: StreamReport): void;
}

export class ChannelServer {
  /** The coordinator's stream id of each admitted channel stream (reports and cuts name it). */
  private readonly ids = new Map<MuxStream, string>();
  private readonly targets = new Set<Socket<MuxEnd>>();

  constructor(
    private readonly mux: MuxChannel,
    private readonly o: ChannelServerOptions,
  ) {}

  /**
   * The coordinator's word: channel stream `muxId` is the audited stream `streamId`, to `dest` (already
   * resolved by the agent's own target policy). Bytes the guest sent early are delivered once connected.
   */
  admit(muxId: number, streamId: string, dest: { host: string; port: number; label: string }): void {
    const twice = this.mux.stream(muxId)?.admitted === true;
    const stream = this.mux.accept(muxId);
    if (!stream) {
      this.o.report({
        streamId,
        state: "failed",
        reason: twice
          ? `stream ${muxId} of the channel is open already (opened twice)`
          : "the guest's stream was reset before the word came (held too long, or over the channel's stream cap)",
      });
      return;
    }
    this.ids.set(stream, streamId);
    let why: string | undefined;
    // Reported once the stream is gone both ways, when its counts are final.
    void stream.whenClosed().then(() => {
      this.ids.delete(stream);
      this.o.report({ streamId, state: "closed", up: stream.bytesIn, down: stream.bytesOut, reason: why });
    });
    // Held bytes are kept in the stream (inside its window) until a target socket is bound to it.
    Bun.connect<MuxEnd>({
      hostname: dest.host,
      port: dest.port,
      allowHalfOpen: true,
      data: newMuxEnd(),
      socket: {
        ...MUX_SOCKET_HANDLERS,
        close: (s, err) => {
          this.targets.delete(s);
          MUX_SOCKET_HANDLERS.close!(s, err);
        },
      },
    }).then(
      (sock) => {
        this.targets.add(sock);
        if (stream.closed) return sock.terminate();
        bindStream(sock, stream);
        stream.ack();
      },
      (e: unknown) => {
        const refused = (e as { code?: string }).code === "ECONNREFUSED";
        why = refused
          ? `the host's ${dest.label} refused the connection (is anything listening there?)`
          : `the host cannot reach ${dest.label}: ${errorMessage(e)}`;
        log.warn(why);
        stream.reset(MuxReset.target);
      },
    );
  }

  /** Bytes so far of every admitted stream still open: the periodic reports that keep the idle clock honest. */
  openReports(): StreamReport[] {
    return [...this.ids].map(([s, streamId]) => ({ streamId, state: "open", up: s.bytesIn, down: s.bytesOut }));
  }

  /** The coordinator refused the stream (or it was never opened there): held bytes are dropped. */
  refuse(muxId: number): void {
    this.mux.refuse(muxId, MuxReset.refused);
  }

  /** Revoke or a scope's end for one stream. */
  cut(streamId: string, reason: MuxReset = MuxReset.cut): void {
    for (const [s, id] of this.ids) if (id === streamId) s.reset(reason);
  }

  /** Ends the channel and every stream on it; each still reports its bytes. */
  close(why?: string): void {
    if (why) log.debug(`channel closed: ${why} (${resetName(MuxReset.cut)})`);
    this.mux.close();
    for (const t of [...this.targets]) t.terminate();
  }
}
