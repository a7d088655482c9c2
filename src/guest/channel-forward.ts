// The guest's local listener on a session's data channel: every local connection becomes a stream of
// the channel at once. Its first bytes go out immediately (the agent holds them until the coordinator's
// word), while the `open` asks the coordinator to admit it; nothing waits for a round trip.
import type { Socket, TCPSocketListener } from "bun";
import { TesseraError, errorMessage } from "../errors.ts";
import { MUX_SOCKET_HANDLERS, bindStream, newMuxEnd, type MuxEnd } from "../data/mux-socket.ts";
import type { ChannelLink } from "./channel-link.ts";

/** How many times a local connection's stream is opened when refused for a reason of the moment (a move). */
const MAX_TRIES = 3;

export interface ChannelForwardOptions {
  link: Pick<ChannelLink, "open">;
  /** Whether the session is live (approved, attached): a connection otherwise closes at once. */
  live(): boolean;
  onStreamError?(message: string): void;
}

export class ChannelForward {
  private server: TCPSocketListener<MuxEnd> | undefined;

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

  /**
   * No new connections. The ones under way are the channel's to end: a stream already over both ways
   * still hands its client the last bytes and FIN (a `y 1` session ends the moment its one stream has),
   * and the channel's close resets the rest.
   */
  close(): void {
    this.server?.stop(false);
    this.server = undefined;
  }

  private accept(sock: Socket<MuxEnd>): void {
    sock.setNoDelay(true);
    sock.data = newMuxEnd();
    if (!this.o.live()) return void sock.terminate();
    this.open(sock, MAX_TRIES);
  }

  /** A stream for the local connection; one refused for a reason of the moment is opened again (see MuxEnd.replay). */
  private open(sock: Socket<MuxEnd>, tries: number): void {
    if (sock.data.closed) return;
    this.o.link.open({
      ready: (stream) => {
        if (tries > 1) sock.data.replay = { chunks: [], bytes: 0, again: (s) => this.open(s, tries - 1) };
        bindStream(sock, stream);
      },
      fail: (err) => {
        this.o.onStreamError?.(`a connection was refused: ${err.message}`);
        sock.terminate();
      },
    });
  }
}
