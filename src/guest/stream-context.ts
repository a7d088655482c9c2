// What the guest's data channel (channel-link.ts) shares with the session that owns it: the live control
// connection, the approved session's TLS settings, and every socket to cut at the end.
import type { Socket } from "bun";
import type { InnerTls } from "../data/data-dial.ts";
import type { End } from "../data/pipe.ts";
import { startVerified, type VerifiedStreamOptions } from "../data/verified-stream.ts";
import type { ClientFrame, FrameOf, ServerFrame } from "../wire/protocol.ts";
import type { DirectListener } from "./direct-listener.ts";

export type Approved = FrameOf<ServerFrame, "approved">;

export interface StreamContext {
  /** Sends on the current control connection (it changes when the session resumes). */
  send(f: ClientFrame): void;
  /** The coordinator's address as the control connection reached it; data connections dial the same. */
  dataAddress(): { host: string; port: number };
  /** The approved session, while it is open and attached (not resuming); undefined otherwise. */
  live(): { approved: Approved } | undefined;
  /** Fresh ref for an "open" frame (the reply names it). */
  nextRef(prefix: string): string;
  /** Options that make a stream end-to-end verified against this session's host. */
  verify(): Omit<VerifiedStreamOptions, "token" | "onVerified" | "onRejected" | "onClose">;
  /** Every live socket of every stream (local, raw and TLS), so the session's end cuts them all. */
  readonly socks: Set<Socket<End>>;
  onStreamError?(message: string): void;
  /** The direct path's listener, once the session has one (not with --relay-only). */
  direct?(): DirectListener | undefined;
  /** A stream went through the relay (the direct listener reports the direct ones). */
  onPath?(path: "direct" | "relay"): void;
}

/** The inner TLS client's options for an approved session: its key and certificate, TLS 1.3. */
export function guestTls(keyPem: string, certPem: string, caPem: string | undefined, tls13: number): InnerTls {
  // The chain is checked against the CA; the key per stream against this session's host (verified-stream.ts).
  return { key: keyPem, cert: certPem, ca: caPem, rejectUnauthorized: false, minVersion: tls13 } as InnerTls;
}

/**
 * Starts a stream of this session on a connected data socket (its token, the end-to-end TLS, the host's
 * key checked) and keeps both its sockets in `ctx.socks` until they close, so the session's end cuts
 * them; `on.onClose` is the caller's part of the TLS socket's close.
 */
export function startStream(
  ctx: StreamContext,
  raw: Socket<End>,
  token: string,
  on: Pick<VerifiedStreamOptions, "onVerified" | "onRejected"> & { onClose?(inner: Socket<End>): void },
): { raw: Socket<End>; inner: Socket<End> } {
  const socks = ctx.socks;
  const conn = startVerified(raw, {
    ...ctx.verify(),
    token,
    onVerified: on.onVerified,
    onRejected: on.onRejected,
    onClose: (inner) => {
      socks.delete(inner);
      on.onClose?.(inner);
    },
  });
  socks.add(conn.raw);
  socks.add(conn.inner);
  conn.raw.data.onClose = () => socks.delete(conn.raw);
  return conn;
}
