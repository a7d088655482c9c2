// Opens one data-plane connection to the coordinator, presents its stream token, and starts the
// end-to-end TLS over it on Bun's native sockets (the guest is the TLS client, the agent the server).
import type { Socket, SocketHandler, TLSOptions } from "bun";
import { derToPem, spkiFingerprint } from "../pki/index.ts";
import { newEnd, PIPE_HANDLERS, type End } from "./pipe.ts";
import { DATA_MAGIC } from "../wire/protocol.ts";

/** Bun's native TLS takes protocol versions as numbers (TLS1_3_VERSION). */
export const TLS_1_3 = 0x0304;

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

/**
 * Resolves with the TLS socket (handshake under way; `end.onHandshake` hears the outcome) and the raw
 * socket under it. `to` is the address the control connection already reached (ControlClient.peer),
 * so no stream pays for a name lookup and every stream goes to its control connection's coordinator.
 */
export async function dialDataNative(to: { host: string; port: number }, token: string, tls: InnerTls, end: End, isServer = false): Promise<{ raw: Socket<End>; inner: Socket<End> }> {
  return startData(await connectData(to), token, tls, end, isServer);
}

/** Only the TCP connection to the data plane (the guest opens it while it waits for its token). */
export async function connectData(to: { host: string; port: number }): Promise<Socket<End>> {
  const raw = await Bun.connect<End>({ hostname: to.host, port: to.port, allowHalfOpen: true, data: newEnd(), socket: RAW_HANDLERS });
  raw.setNoDelay(true);
  return raw;
}

/** Presents the token on a connected data socket and starts the end-to-end TLS over it. */
export function startData(raw: Socket<End>, token: string, tls: InnerTls, end: End, isServer = false): { raw: Socket<End>; inner: Socket<End> } {
  if (raw.data.closed) throw new Error("the data connection closed before its token was ready");
  raw.write(Buffer.concat([DATA_MAGIC, Buffer.from(token, "base64url")]));
  // The preamble goes out in clear first; everything after it is the end-to-end TLS.
  // isServer (not in bun-types, but honoured by upgradeTLS as node:tls uses it) makes the dialled
  // socket the TLS server: the agent dials out, yet serves the end-to-end TLS.
  const [, inner] = raw.upgradeTLS<End>({ data: end, tls, socket: PIPE_HANDLERS, ...(isServer ? { isServer: true } : {}) } as Parameters<typeof raw.upgradeTLS<End>>[0]);
  return { raw, inner };
}

/**
 * Whether the TLS peer's certificate carries the key with this SPKI fingerprint. Parsing a certificate
 * costs milliseconds, so the DER that passed once is remembered in `cache` and later streams of the same
 * session compare bytes (a different certificate is parsed and checked in full).
 */
export function peerKeyIs(sock: { getPeerCertificate(): { raw?: Buffer } | null | undefined }, spki: string, cache: { checked?: Buffer }): boolean {
  const raw = sock.getPeerCertificate()?.raw;
  if (!raw) return false;
  if (cache.checked?.equals(raw)) return true;
  if (spkiFingerprint(derToPem(raw, "CERTIFICATE")) !== spki) return false;
  cache.checked = Buffer.from(raw);
  return true;
}
