// Opens one data-plane connection to the coordinator, presents its stream token, and starts the
// end-to-end TLS over it: natively for the guest (a TLS client), with node:tls for the agent, because
// Bun's native upgradeTLS can only be a TLS client on a socket it dialled, and the agent's must serve.
import net from "node:net";
import type { Socket, TLSOptions } from "bun";
import { derToPem, spkiFingerprint } from "../pki/index.ts";
import { newEnd, PIPE_HANDLERS, type End } from "./pipe.ts";
import { DATA_MAGIC } from "./protocol.ts";

/** Bun's native TLS takes protocol versions as numbers (TLS1_3_VERSION). */
export const TLS_1_3 = 0x0304;

export type InnerTls = TLSOptions & { isServer?: boolean; minVersion?: number };

/**
 * Resolves with the TLS socket (handshake under way; `end.onHandshake` hears the outcome) and the raw
 * socket under it. `to` is the address the control connection already reached (ControlClient.peer),
 * so no stream pays for a name lookup and every stream goes to its control connection's coordinator.
 */
export async function dialDataNative(to: { host: string; port: number }, token: string, tls: InnerTls, end: End): Promise<{ raw: Socket<End>; inner: Socket<End> }> {
  const raw = await Bun.connect<End>({ hostname: to.host, port: to.port, allowHalfOpen: true, data: newEnd(), socket: PIPE_HANDLERS });
  raw.setNoDelay(true);
  raw.write(Buffer.concat([DATA_MAGIC, Buffer.from(token, "base64url")]));
  // The preamble goes out in clear first; everything after it is the end-to-end TLS.
  const [, inner] = raw.upgradeTLS<End>({ data: end, tls, socket: PIPE_HANDLERS });
  return { raw, inner };
}

/** node:net flavour (the agent): calls `ready` once connected and the preamble is written; the caller wraps it in TLS. */
export function dialData(to: { host: string; port: number }, token: string, ready: (raw: net.Socket) => void): net.Socket {
  // Bun's TLS only keeps half-close semantics when it wraps an already-connected socket.
  const raw = net.connect({ host: to.host, port: to.port, allowHalfOpen: true }, () => {
    raw.write(Buffer.concat([DATA_MAGIC, Buffer.from(token, "base64url")]));
    ready(raw);
  });
  raw.setNoDelay(true);
  return raw;
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
