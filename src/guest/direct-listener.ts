// The guest's end of the direct path: a listener the host's agent dials (the guest's signed hints say
// where), on the one acceptor both sides use (data/direct-accept.ts): the agent presents the stream's
// token and serves the end-to-end TLS, and only the host's approved key gets the waiting stream.
import os from "node:os";
import type { Socket } from "bun";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";
import { pair, type End } from "../data/pipe.ts";
import type { InnerTls } from "../data/data-dial.ts";
import { DirectAcceptor, type DirectWaiter, type PeerPin } from "../data/direct-accept.ts";
import { probeToken, type Hint } from "../wire/hints.ts";

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
  onPath?(path: "direct" | "relay"): void;
}

export class DirectListener {
  private readonly acceptor: DirectAcceptor;
  private readonly pin: PeerPin;
  /** Whether the last stream went direct: new connections then skip the relay's pre-dial. */
  active = false;

  constructor(private readonly o: DirectListenerOptions) {
    this.pin = { peerSpki: o.hostSpki, checked: o.checked };
    this.acceptor = new DirectAcceptor({
      tls: o.tls, isServer: false, peerRole: "host", resume: o.resume, socks: o.socks,
      onTaken: () => {
        if (!this.active) o.onPath?.("direct");
        this.active = true;
      },
    });
  }

  /** Listens on every interface, at a port the system picks; the agent's probe is answered from then on. */
  listen(): number {
    const port = this.acceptor.listen();
    this.acceptor.allowProbe(probeToken(this.o.sessionId), this.pin);
    return port;
  }

  /**
   * Addresses this machine may be reached on: every non-internal IPv4 address, and loopback when the
   * coordinator is reached on loopback (guest, coordinator and host on one machine).
   */
  static hints(port: number, coordinatorOnLoopback: boolean): Hint[] {
    const out: Hint[] = coordinatorOnLoopback ? [{ host: "127.0.0.1", port }] : [];
    for (const addrs of Object.values(os.networkInterfaces())) {
      for (const a of addrs ?? []) if (!a.internal && a.family === "IPv4" && !a.address.startsWith("169.254.")) out.push({ host: a.address, port });
    }
    return out.slice(0, 16);
  }

  /** A stream the coordinator put on the direct path: `w` waits for the agent's connection with its token. */
  expect(f: FrameOf<ServerFrame, "stream">, w: DirectWaiter): void {
    this.acceptor.expect(f.direct!, f.streamId, this.pin, w);
  }

  /** A local TCP connection waits: paired with the direct connection, or `relay` if the agent cannot reach us. */
  expectSocket(f: FrameOf<ServerFrame, "stream">, local: Socket<End>, relay: () => void, onError?: (m: string) => void): void {
    const onClose = local.data.onClose;
    // The local client leaving first: the agent's connection, when it comes, finds nothing and is closed.
    local.data.onClose = (s, clean) => {
      if (!s.data.peer) this.acceptor.cancel(f.streamId);
      onClose?.(s, clean);
    };
    this.expect(f, {
      take: (inner) => pair(local, inner),
      gone: () => local.data.closed,
      fallback: relay,
      fail: (why) => {
        onError?.(why);
        local.terminate();
      },
    });
  }

  /** The coordinator says the agent could not reach us for this stream: it goes through the relay. */
  fallback(streamId: string): void {
    const w = this.acceptor.cancel(streamId);
    if (!w) return;
    this.active = false;
    this.o.onPath?.("relay");
    w.fallback();
  }

  stop(): void {
    this.acceptor.stop();
  }
}
