// The guest's end of the direct path: a listener the host's agent dials (the guest's signed hints say
// where), serving the session's end-to-end TLS with the same pinned keys as the relay. A connection
// is used only once the host's key is checked and it presents a stream token the coordinator gave both
// sides for a stream this guest is waiting on; everything else is closed unread.
import os from "node:os";
import { createHash } from "node:crypto";
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import { logger } from "../log.ts";
import { STREAM_TOKEN_BYTES, type FrameOf, type ServerFrame } from "../wire/protocol.ts";
import { cut, newEnd, pair, PIPE_HANDLERS, type End } from "../data/pipe.ts";
import { handshakeProblem, peerKeyIs } from "../data/verified-stream.ts";
import type { InnerTls } from "../data/data-dial.ts";
import { PROBE_OK, PROBE_TOKEN, type Hint } from "../wire/hints.ts";

const log = logger("join:direct");

/** Connections not yet matched to a stream (handshake, token): past this, new ones are refused. */
const MAX_UNMATCHED = 64;
/** A connection must show its token this soon after it opens. */
const MATCH_TIMEOUT_MS = 10_000;
/** A stream offered on the direct path waits this long for the agent's connection before it is cut. */
const EXPECT_TIMEOUT_MS = 30_000;
/** Most streams waiting for the agent's direct connection at once (the coordinator caps pending streams lower). */
const MAX_EXPECTED = 4096;

type DirectEnd = End & { head?: Buffer; verified?: boolean; timer?: ReturnType<typeof setTimeout> };

interface Expected { local: Socket<End>; timer: ReturnType<typeof setTimeout>; streamId: string; fallback: () => void }

export interface DirectListenerOptions {
  /** The guest's session key and certificate, and the CA: a client certificate from the CA is required. */
  tls: InnerTls;
  hostSpki: string;
  /** The host certificate already checked (shared with the relay streams). */
  checked: { checked?: Buffer };
  /** Every live socket of the session, cut at its end. */
  socks: Set<Socket<End>>;
  onPath?(path: "direct" | "relay"): void;
  onStreamError?(message: string): void;
}

export class DirectListener {
  private server: TCPSocketListener<DirectEnd> | undefined;
  private readonly expected = new Map<string, Expected>();
  private readonly byStream = new Map<string, string>();
  private unmatched = 0;
  /** Whether the last stream went direct: new connections then skip the relay's pre-dial. */
  active = false;

  constructor(private readonly o: DirectListenerOptions) {}

  /** Listens on every interface, at a port the system picks. */
  listen(): number {
    this.server = Bun.listen<DirectEnd>({
      hostname: "0.0.0.0", port: 0, allowHalfOpen: true, tls: this.o.tls as never,
      socket: {
        ...(PIPE_HANDLERS as SocketHandler<DirectEnd>),
        open: (s: Socket<DirectEnd>) => this.opened(s),
        handshake: (s: Socket<DirectEnd>, ok: boolean, err: Error | null) => this.handshake(s, ok, err),
        data: (s: Socket<DirectEnd>, chunk: Uint8Array) => (s.data.head ? this.head(s, chunk) : PIPE_HANDLERS.data!(s, chunk as Buffer)),
        close: (s: Socket<DirectEnd>, err?: Error) => {
          this.unmatch(s, false);
          PIPE_HANDLERS.close!(s, err as Error);
        },
      },
    });
    return this.server.port;
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

  /** A stream the coordinator put on the direct path: `local` waits for the agent's connection with this token. */
  expect(f: FrameOf<ServerFrame, "stream">, local: Socket<End>, fallback: () => void): void {
    const key = tokenKey(Buffer.from(f.direct!, "base64url"));
    if (this.expected.size >= MAX_EXPECTED) {
      this.o.onStreamError?.(`more than ${MAX_EXPECTED} streams are waiting for the host's direct connection; refused one`);
      return void local.terminate();
    }
    const timer = setTimeout(() => {
      this.forget(key);
      this.o.onStreamError?.("the host's direct connection did not come; the connection was closed");
      local.terminate();
    }, EXPECT_TIMEOUT_MS);
    timer.unref?.();
    this.expected.set(key, { local, timer, streamId: f.streamId, fallback });
    this.byStream.set(f.streamId, key);
    const onClose = local.data.onClose;
    // The local client leaving first: the agent's connection, when it comes, finds nothing and is closed.
    local.data.onClose = (s, clean) => {
      if (!s.data.peer) this.forget(key);
      onClose?.(s, clean);
    };
  }

  /** The coordinator says the agent could not reach us for this stream: it goes through the relay. */
  fallback(streamId: string): void {
    const key = this.byStream.get(streamId);
    const e = key && this.forget(key);
    if (!e) return;
    this.active = false;
    this.o.onPath?.("relay");
    e.fallback();
  }

  stop(): void {
    this.server?.stop(true);
    for (const key of [...this.expected.keys()]) this.forget(key)?.local.terminate();
  }

  private forget(key: string): Expected | undefined {
    const e = this.expected.get(key);
    if (!e) return undefined;
    clearTimeout(e.timer);
    this.expected.delete(key);
    this.byStream.delete(e.streamId);
    return e;
  }

  private opened(s: Socket<DirectEnd>): void {
    s.data = newEnd({ onClose: (sock) => this.o.socks.delete(sock) }) as DirectEnd;
    if (this.unmatched >= MAX_UNMATCHED) return void s.terminate();
    this.unmatched++;
    s.data.head = Buffer.alloc(0);
    s.data.timer = setTimeout(() => s.terminate(), MATCH_TIMEOUT_MS);
    s.data.timer.unref?.();
    s.setNoDelay(true);
    this.o.socks.add(s);
  }

  private handshake(s: Socket<DirectEnd>, ok: boolean, err: Error | null): void {
    // The agent must hold the host's key, whatever else the CA signed.
    const why = handshakeProblem(ok, err, true) ?? (peerKeyIs(s, this.o.hostSpki, this.o.checked) ? undefined : "the host's key is not the one this session was approved for");
    if (why) {
      log.debug(`direct connection refused: ${why}`);
      return this.unmatch(s, true);
    }
    s.data.verified = true;
  }

  /** The first bytes: a stream token (or the probe's), only after the host's key was checked. */
  private head(s: Socket<DirectEnd>, chunk: Uint8Array): void {
    if (!s.data.verified) return this.unmatch(s, true);
    const head = Buffer.concat([s.data.head!, chunk]);
    if (head.length < STREAM_TOKEN_BYTES) return void (s.data.head = head);
    const token = head.subarray(0, STREAM_TOKEN_BYTES);
    const rest = head.subarray(STREAM_TOKEN_BYTES);
    this.unmatch(s, false);
    if (token.equals(PROBE_TOKEN)) {
      s.write(PROBE_OK);
      return void s.end();
    }
    const e = this.forget(tokenKey(token));
    if (!e || e.local.data.closed) return void s.terminate();
    if (rest.length) {
      s.data.early.push(Buffer.from(rest));
      s.data.earlyBytes += rest.length;
    }
    s.data.bytesRead = rest.length;
    pair(e.local, s);
    if (!this.active) this.o.onPath?.("direct");
    this.active = true;
  }

  private unmatch(s: Socket<DirectEnd>, kill: boolean): void {
    if (s.data.head) {
      this.unmatched--;
      s.data.head = undefined;
      clearTimeout(s.data.timer);
    }
    if (kill) cut(s);
  }
}

function tokenKey(raw: Uint8Array): string {
  // Looked up by hash, as the coordinator's splicer does: map probing leaks nothing about a token.
  return createHash("sha256").update(raw).digest("base64");
}
