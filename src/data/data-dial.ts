// Opens one data-plane connection to the coordinator, presents its stream token, and starts the
// end-to-end TLS over it on Bun's native sockets (the guest is the TLS client, the agent the server).
// verified-stream.ts decides whether what answers is the peer this session was approved for.
import type { Socket, SocketHandler, TLSOptions } from "bun";
import { newEnd, PIPE_HANDLERS, type End } from "./pipe.ts";
import { encodePreamble } from "../wire/preamble.ts";

/** Bun's native TLS takes protocol versions as numbers (TLS1_3_VERSION). */
export const TLS_1_3 = 0x0304;

/** Idle time before TCP keepalive probes a data connection (the kernel's own default is 2 hours). */
export const KEEPALIVE_MS = 15_000;

export type InnerTls = TLSOptions & { minVersion?: number };

/**
 * The socket under the TLS: Bun still reports its ciphertext here after upgradeTLS, and it must be
 * dropped (the TLS socket has it), not buffered as a pipe end would.
 */
const RAW_HANDLERS: SocketHandler<End> = {
  data() {},
  error() {},
  close(s, err) {
    s.data.closed = true;
    s.data.onClose?.(s, !err);
  },
};

/** Only the TCP connection to the data plane (the guest opens it while it waits for its token). */
export async function connectData(to: { host: string; port: number }): Promise<Socket<End>> {
  const raw = await Bun.connect<End>({
    hostname: to.host,
    port: to.port,
    allowHalfOpen: true,
    data: newEnd(),
    socket: RAW_HANDLERS,
  });
  raw.setNoDelay(true);
  // A stream whose far end vanished (no FIN, no RST) is found by TCP keepalive, not held for ever.
  raw.setKeepAlive(true, KEEPALIVE_MS);
  return raw;
}

/** Presents the token on a connected data socket and starts the end-to-end TLS over it. */
export function startData(
  raw: Socket<End>,
  token: string,
  tls: InnerTls,
  end: End,
  isServer = false,
): { raw: Socket<End>; inner: Socket<End> } {
  presentToken(raw, token);
  // The preamble goes out in clear first; everything after it is the end-to-end TLS.
  // isServer (not in bun-types, but honoured by upgradeTLS as node:tls uses it) makes the dialled
  // socket the TLS server: the agent dials out, yet serves the end-to-end TLS.
  const [, inner] = raw.upgradeTLS<End>({
    data: end,
    tls,
    socket: PIPE_HANDLERS,
    ...(isServer ? { isServer: true } : {}),
  } as Parameters<typeof raw.upgradeTLS<End>>[0]);
  return { raw, inner };
}

/** Writes the data preamble (magic and token) on a connected data socket, in clear, before any TLS. */
export function presentToken(raw: Socket<End>, token: string): void {
  if (raw.data.closed) throw new Error("the data connection closed before its token was ready");
  raw.write(encodePreamble(token));
}
