// The one place a data stream becomes trusted, for agent and guest alike: the token is presented, the
// end-to-end TLS runs, and the far end is accepted only if its certificate chains to the deployment's
// CA and carries the very key this session was approved for. The coordinator cannot pass that check.
import type { Socket } from "bun";
import { derToPem, spkiFingerprint } from "../pki/index.ts";
import { connectData, startData, type InnerTls } from "./data-dial.ts";
import { cut, newEnd, type End } from "./pipe.ts";

export interface VerifiedStreamOptions {
  token: string;
  tls: InnerTls;
  /** The agent serves the inner TLS on a connection it dialled out; the guest is its client. */
  isServer: boolean;
  /** Who the far end is, for messages ("host", "guest"). */
  peerRole: string;
  /** The only key the far end may hold (SPKI fingerprint), and where a certificate that passed is remembered. */
  peerSpki: string;
  checked: { checked?: Buffer };
  /** TLS client: where the session keeps its latest ticket (see End.resume). */
  resume?: { ticket?: Buffer };
  /** The far end is the approved peer: bytes may flow. */
  onVerified(inner: Socket<End>): void;
  /** The handshake failed or the key is another's; the stream is already cut. */
  onRejected(why: string): void;
  onClose?(inner: Socket<End>, clean: boolean): void;
}

/** Starts the verified stream on a connected data socket; returns the raw socket and the TLS one over it. */
export function startVerified(raw: Socket<End>, o: VerifiedStreamOptions): { raw: Socket<End>; inner: Socket<End> } {
  const end = newEnd({
    resume: o.resume,
    onClose: o.onClose,
    onHandshake: (inner, ok, err) => {
      const why =
        handshakeProblem(ok, err, o.isServer) ??
        (peerKeyIs(inner, o.peerSpki, o.checked)
          ? undefined
          : `the ${o.peerRole}'s key is not the one this session was approved for`);
      if (why === undefined) return o.onVerified(inner);
      // The reason first: cutting runs the close handler at once, and a caller that settles on close
      // ("closed before the host's end answered") would otherwise report that instead of a swapped key.
      o.onRejected(why);
      cut(inner);
    },
  });
  return startData(raw, o.token, o.tls, end, o.isServer);
}

/** Dials the data plane at `to` (the address the control connection reached) and starts the verified stream. */
export async function dialVerified(
  to: { host: string; port: number },
  o: VerifiedStreamOptions,
): Promise<{ raw: Socket<End>; inner: Socket<End> }> {
  return startVerified(await connectData(to), o);
}

/**
 * The agent requires a client certificate from the CA (rejectUnauthorized), so any error fails. The
 * guest checks the chain but not names: Bun reports a chain that does not lead to the CA first, and
 * only then that no name matches. Names mean nothing here (the host is pinned by key), so for the
 * guest a name miss alone passes, and anything else (or a failure without a reason) does not.
 */
export function handshakeProblem(ok: boolean, err: Error | null, isServer: boolean): string | undefined {
  if (err)
    return !isServer && (err as { code?: string }).code === "ERR_TLS_CERT_ALTNAME_INVALID" ? undefined : err.message;
  return ok ? undefined : "TLS handshake failed";
}

/**
 * Whether the TLS peer's certificate carries the key with this SPKI fingerprint. Parsing a certificate
 * costs milliseconds, so the DER that passed once is remembered in `cache` and later streams of the same
 * session compare bytes (a different certificate is parsed and checked in full).
 */
export function peerKeyIs(
  sock: { getPeerX509Certificate(): { raw?: Buffer } | null | undefined },
  spki: string,
  cache: { checked?: Buffer },
): boolean {
  // Not getPeerCertificate(): it builds the certificate's every field and fingerprint (~12 µs a call
  // here, once per stream on each side); the X509 object's DER alone costs ~1.5 µs.
  const raw = sock.getPeerX509Certificate()?.raw;
  if (!raw) return false;
  if (cache.checked?.equals(raw)) return true;
  if (spkiFingerprint(derToPem(raw, "CERTIFICATE")) !== spki) return false;
  cache.checked = Buffer.from(raw);
  return true;
}
