// The dialling end of a direct connection, for agent and guest alike: dial a proven (or hinted) address,
// present a token, run the session's end-to-end TLS exactly as on the relay (data/verified-stream.ts),
// and accept the far end only with the key this session was approved for. Probes are the same dial with
// the session's probe token, answered by the far end once both keys check out.
import type { Socket } from "bun";
import { errorMessage } from "../errors.ts";
import { PROBE_OK, probeToken, type Hint } from "../wire/hints.ts";
import { formatTarget } from "../wire/address.ts";
import { connectData, type InnerTls } from "./data-dial.ts";
import { cut, type End } from "./pipe.ts";
import { startVerified } from "./verified-stream.ts";
import type { PeerPin } from "./direct-accept.ts";

/** How long one probe, or one stream's TCP connect, may take before the address counts as not working. */
export const DIRECT_DIAL_TIMEOUT_MS = 2_000;
/**
 * A stream's dial, once connected, waits this long for the end-to-end TLS: the far end may already have
 * taken the stream (its side of the handshake ends first), so giving up early would cut a working stream.
 */
export const DIRECT_VERIFY_TIMEOUT_MS = 15_000;

export interface DirectDialOptions {
  tls: InnerTls;
  /** The agent serves the end-to-end TLS wherever it is, the guest is its client. */
  isServer: boolean;
  /** Who the far end is, for messages ("host", "guest"). */
  peerRole: string;
  pin: PeerPin;
  /** TLS client: where the session keeps its latest ticket. */
  resume?: { ticket?: Buffer };
  timeoutMs?: number;
  /** Streams (not probes): the TLS after a made connection gets DIRECT_VERIFY_TIMEOUT_MS. */
  patient?: boolean;
}

export type Conn = { raw: Socket<End>; inner: Socket<End> };

/** Dials `h`, presents `token` (base64url) and resolves once the far end is verified; every failure rejects with where and why. */
export async function dialDirect(h: Hint, token: string, o: DirectDialOptions): Promise<Conn> {
  const ms = o.timeoutMs ?? DIRECT_DIAL_TIMEOUT_MS;
  const where = formatTarget(h.host, h.port);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let conn: Conn | undefined;
  let fail: (e: Error) => void = () => {};
  const timeout = new Promise<never>((_, reject) => {
    fail = reject;
    timer = setTimeout(() => {
      if (conn) cutBoth(conn);
      reject(
        new Error(`${where} did not ${conn ? `complete the ${o.peerRole}'s TLS` : "connect"} within ${ms / 1000}s`),
      );
    }, ms);
  });
  try {
    return await Promise.race([
      timeout,
      (async () => {
        const raw = await connectData(h).catch((e: unknown) => {
          throw new Error(`${where}: ${errorMessage(e)}`);
        });
        if (o.patient) {
          clearTimeout(timer);
          timer = setTimeout(() => {
            if (conn) cutBoth(conn);
            fail(
              new Error(`${where} did not complete the ${o.peerRole}'s TLS within ${DIRECT_VERIFY_TIMEOUT_MS / 1000}s`),
            );
          }, DIRECT_VERIFY_TIMEOUT_MS);
        }
        return new Promise<Conn>((resolve, reject) => {
          const gone = () =>
            reject(new Error(`${where} closed the connection before the ${o.peerRole}'s TLS was verified`));
          conn = startVerified(raw, {
            token,
            tls: o.tls,
            isServer: o.isServer,
            peerRole: o.peerRole,
            peerSpki: o.pin.peerSpki,
            checked: o.pin.checked,
            resume: o.resume,
            onVerified: () => resolve(conn!),
            onRejected: (why) => reject(new Error(`${where}: ${why}`)),
            onClose: gone,
          });
          raw.data.onClose = gone;
        });
      })(),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** One probe of `h`: the dial with the session's probe token, then the far end's one-byte answer. */
export async function probeDirect(h: Hint, sessionId: string, o: DirectDialOptions): Promise<void> {
  const conn = await dialDirect(h, probeToken(sessionId).toString("base64url"), o);
  const sock = conn.inner;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${formatTarget(h.host, h.port)}: no answer to the probe`)),
      o.timeoutMs ?? DIRECT_DIAL_TIMEOUT_MS,
    );
    const answer = (got: Buffer) => {
      clearTimeout(timer);
      if (got.subarray(0, PROBE_OK.length).equals(PROBE_OK)) resolve();
      else reject(new Error(`${formatTarget(h.host, h.port)}: the ${o.peerRole} did not answer the probe`));
    };
    const early = Buffer.concat(sock.data.early);
    if (early.length) return answer(early);
    // The answer is read here, not piped anywhere (see pipe.ts SocketSink).
    sock.data.sink = {
      feed: (c) => answer(Buffer.from(c)),
      drained() {},
      ended: () => answer(Buffer.alloc(0)),
      gone: () => answer(Buffer.alloc(0)),
    };
  }).finally(() => cutBoth(conn));
}

/** Probes every hint at once, each once; resolves with the first that proved to be the peer, and why the others did not. */
export async function firstProbe(
  hints: Hint[],
  sessionId: string,
  o: DirectDialOptions,
): Promise<{ won?: Hint; why: string[] }> {
  const why: string[] = [];
  const won = await Promise.any(
    hints.map((h) =>
      probeDirect(h, sessionId, o).then(
        () => h,
        (e: unknown) => {
          why.push(errorMessage(e));
          throw e;
        },
      ),
    ),
  ).catch(() => undefined);
  return { won, why };
}

/** A data connection and the TLS over it. */
export function cutBoth(conn: Conn): void {
  cut(conn.inner);
  cut(conn.raw);
}
