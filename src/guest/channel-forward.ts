// The guest's local listener on a session's data channel (issue 29): every local connection becomes a
// stream of the one channel at once. Its first bytes go out immediately (the agent holds them until the
// coordinator's word), while `announce` asks the coordinator to open it; nothing waits for a round trip.
import type { Socket, TCPSocketListener } from "bun";
import { TesseraError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { MuxChannel } from "../data/mux.ts";
import { MUX_SOCKET_HANDLERS, bindStream, newMuxEnd, type MuxEnd } from "../data/mux-socket.ts";
import { MuxReset } from "../wire/mux-frames.ts";

const log = logger("guest:channel");
/** Channel stream ids are u32; a channel that used them all is replaced by a fresh one. */
const LAST_ID = 0xffffffff;

export interface ChannelForwardOptions {
  /** The session's channel now, or undefined while it is being (re-)established. */
  channel(): MuxChannel | undefined;
  /** Ask the coordinator to open channel stream `muxId` (the `open` frame); it audits, then tells the agent. */
  announce(muxId: number): void;
}

export class ChannelForward {
  private server: TCPSocketListener<MuxEnd> | undefined;
  private next = 1;

  constructor(private readonly o: ChannelForwardOptions) {}

  listen(host: string, port: number): { host: string; port: number } {
    try {
      this.server = Bun.listen<MuxEnd>({
        hostname: host,
        port,
        allowHalfOpen: true,
        socket: {
          ...MUX_SOCKET_HANDLERS,
          open: (sock) => this.accept(sock),
        },
      });
    } catch (err) {
      const code = (err as { code?: string }).code;
      throw new TesseraError(
        "listen",
        code === "EADDRINUSE"
          ? `local port ${host}:${port} is already in use; pick another with --local`
          : `cannot listen on ${host}:${port}: ${errorMessage(err)}`,
      );
    }
    return { host, port: this.server.port };
  }

  /** The coordinator (or the agent) would not open this stream: its local connection closes. */
  refused(muxId: number, why: string): void {
    const s = this.o.channel()?.stream(muxId);
    if (!s) return;
    log.warn(`stream refused: ${why}`);
    s.reset(MuxReset.refused);
  }

  close(): void {
    this.server?.stop(true);
    this.server = undefined;
  }

  private accept(sock: Socket<MuxEnd>): void {
    sock.setNoDelay(true);
    sock.data = newMuxEnd();
    const mux = this.o.channel();
    if (!mux || mux.closed) {
      // No channel this instant (it is being re-established): the client sees a closed connection.
      sock.terminate();
      return;
    }
    if (this.next > LAST_ID) {
      mux.close(new TesseraError("limit", "this channel used every stream id; a new one takes its place"));
      sock.terminate();
      return;
    }
    const id = this.next++;
    let stream: ReturnType<MuxChannel["open"]>;
    try {
      stream = mux.open(id);
    } catch (err) {
      log.warn(`local connection refused: ${errorMessage(err)}`);
      sock.terminate();
      return;
    }
    bindStream(sock, stream);
    this.o.announce(id);
  }
}
