// A session's data channel on a connected data socket: the token is presented, the end-to-end TLS 1.3
// runs (the agent serves it on a connection it dialled out, the guest is its client), and the far end is
// accepted only if it holds the very key the session was approved for, exactly as a single stream is in
// verified-stream.ts. What flows after that is the multiplexed channel (mux.ts), not one stream's bytes.
import type { Socket } from "bun";
import { CHANNEL_HANDLERS, type ChannelEnd } from "./mux-connection.ts";
import { presentToken, type InnerTls } from "./data-dial.ts";
import type { End } from "./pipe.ts";
import { handshakeProblem, peerKeyIs } from "./verified-stream.ts";

export interface ChannelDialOptions {
  token: string;
  tls: InnerTls;
  isServer: boolean;
  /** Who the far end is, for messages ("host", "guest"). */
  peerRole: string;
  /** The only key the far end may hold (SPKI fingerprint). */
  peerSpki: string;
  checked: { checked?: Buffer };
  /** The far end is the approved peer: set `inner.data.mux` and start the channel. */
  onVerified(inner: Socket<ChannelEnd>): void;
  /** The handshake failed or the key is another's; the connection is already cut. */
  onRejected(why: string): void;
}

/** Starts the verified channel; returns the TLS socket (its `data.mux` is set by onVerified). */
export function startChannel(raw: Socket<End>, o: ChannelDialOptions): Socket<ChannelEnd> {
  presentToken(raw, o.token);
  // Settled once: verified, rejected, or closed before the handshake said either.
  let settled = false;
  const [, inner] = raw.upgradeTLS<ChannelEnd>({
    data: { mux: undefined },
    tls: o.tls,
    socket: {
      ...CHANNEL_HANDLERS,
      handshake(s, ok, err) {
        if (settled) return;
        settled = true;
        const why =
          handshakeProblem(ok, err, o.isServer) ??
          (peerKeyIs(s, o.peerSpki, o.checked)
            ? undefined
            : `the ${o.peerRole}'s key is not the one this session was approved for`);
        if (why === undefined) return o.onVerified(s);
        s.terminate();
        o.onRejected(why);
      },
      close(s, err) {
        if (settled) return CHANNEL_HANDLERS.close!(s, err);
        settled = true;
        o.onRejected(`the ${o.peerRole} closed the channel before its TLS handshake finished`);
      },
    },
    // isServer (not in bun-types, honoured by upgradeTLS): the agent dials out yet serves the TLS.
    ...(o.isServer ? { isServer: true } : {}),
  } as Parameters<typeof raw.upgradeTLS<ChannelEnd>>[0]);
  return inner;
}
