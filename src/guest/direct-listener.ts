// The guest's end of the direct path: a listener the host's agent dials (the guest's signed hints say
// where). A connection opens as a relay data connection does (magic + token, then the agent serves
// the end-to-end TLS), so the same pinned keys decide: it must present a token the coordinator gave
// both sides for a stream this guest is waiting on (or the probe's), and the host's key must answer.
import os from "node:os";
import { createHash } from "node:crypto";
import type { Socket, TCPSocketListener } from "bun";
import { logger } from "../log.ts";
import { DATA_MAGIC, PREAMBLE_BYTES, type FrameOf, type ServerFrame } from "../wire/protocol.ts";
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

/** The raw connection: its preamble until it is read, then nothing (the TLS over it has the bytes). */
interface Raw { head: Buffer; timer?: ReturnType<typeof setTimeout>; upgraded: boolean; closed: boolean; parked?: string }

/** Who waits for a stream's direct connection: a local TCP connection (port-forward.ts) or a node stream (node-streams.ts). */
export interface DirectWaiter {
  /** The verified direct connection for this stream, theirs now. */
  take(inner: Socket<End>): void;
  /** The one waiting went away: a direct connection for it is closed. */
  gone(): boolean;
  /** The agent could not reach us for this stream: it goes through the relay. */
  fallback(): void;
  /** Nothing came: the stream is over. */
  fail(why: string): void;
}

interface Expected { w: DirectWaiter; timer: ReturnType<typeof setTimeout>; streamId: string }

export interface DirectListenerOptions {
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
  onStreamError?(message: string): void;
}

export class DirectListener {
  private server: TCPSocketListener<Raw> | undefined;
  private readonly expected = new Map<string, Expected>();
  private readonly byStream = new Map<string, string>();
  /** Connections whose token came before the coordinator's "stream" frame did (two connections race): they wait for it, bounded. */
  private readonly parked = new Map<string, Socket<Raw>>();
  private unmatched = 0;
  /** Whether the last stream went direct: new connections then skip the relay's pre-dial. */
  active = false;

  constructor(private readonly o: DirectListenerOptions) {}

  /** Listens on every interface, at a port the system picks. */
  listen(): number {
    this.server = Bun.listen<Raw>({
      hostname: "0.0.0.0", port: 0, allowHalfOpen: true,
      socket: {
        open: (s) => this.opened(s),
        data: (s, chunk) => this.head(s, chunk),
        close: (s) => {
          s.data.closed = true;
          if (s.data.parked && this.parked.get(s.data.parked) === s) this.parked.delete(s.data.parked);
          this.unmatch(s, false);
        },
        error() {},
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

  /** A stream the coordinator put on the direct path: `w` waits for the agent's connection with this token. */
  expect(f: FrameOf<ServerFrame, "stream">, w: DirectWaiter): void {
    const key = tokenKey(Buffer.from(f.direct!, "base64url"));
    if (this.expected.size >= MAX_EXPECTED) return w.fail(`more than ${MAX_EXPECTED} streams are waiting for the host's direct connection; refused one`);
    const timer = setTimeout(() => {
      this.forget(key);
      w.fail("the host's direct connection did not come; the connection was closed");
    }, EXPECT_TIMEOUT_MS);
    timer.unref?.();
    this.expected.set(key, { w, timer, streamId: f.streamId });
    this.byStream.set(f.streamId, key);
    const early = this.parked.get(key);
    if (early) {
      this.parked.delete(key);
      this.upgrade(early, key, false);
    }
  }

  /** A local TCP connection waits: paired with the direct connection, or `relay` if the agent cannot reach us. */
  expectSocket(f: FrameOf<ServerFrame, "stream">, local: Socket<End>, relay: () => void, onError?: (m: string) => void): void {
    const onClose = local.data.onClose;
    // The local client leaving first: the agent's connection, when it comes, finds nothing and is closed.
    local.data.onClose = (s, clean) => {
      if (!s.data.peer) this.cancel(f.streamId);
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

  /** The one waiting for this stream left. */
  cancel(streamId: string): void {
    const key = this.byStream.get(streamId);
    if (key) this.forget(key);
  }

  /** The coordinator says the agent could not reach us for this stream: it goes through the relay. */
  fallback(streamId: string): void {
    const key = this.byStream.get(streamId);
    const e = key && this.forget(key);
    if (!e) return;
    this.active = false;
    this.o.onPath?.("relay");
    e.w.fallback();
  }

  stop(): void {
    this.server?.stop(true);
    for (const key of [...this.expected.keys()]) this.forget(key)?.w.fail("the session ended");
  }

  private forget(key: string): Expected | undefined {
    const e = this.expected.get(key);
    if (!e) return undefined;
    clearTimeout(e.timer);
    this.expected.delete(key);
    this.byStream.delete(e.streamId);
    return e;
  }

  private opened(s: Socket<Raw>): void {
    s.data = { head: Buffer.alloc(0), upgraded: false, closed: false };
    if (this.unmatched >= MAX_UNMATCHED) return void s.terminate();
    this.unmatched++;
    s.data.timer = setTimeout(() => s.terminate(), MATCH_TIMEOUT_MS);
    s.data.timer.unref?.();
  }

  /** The preamble: magic and a stream token (or the probe's); then this guest starts the TLS as its client. */
  private head(s: Socket<Raw>, chunk: Uint8Array): void {
    // After the upgrade Bun still reports the ciphertext here; the TLS socket has it.
    if (s.data.upgraded || s.data.closed) return;
    const head = Buffer.concat([s.data.head, chunk]);
    if (head.length < PREAMBLE_BYTES) return void (s.data.head = head);
    // The agent says nothing after its preamble until the guest's ClientHello: more is not an agent.
    if (head.length > PREAMBLE_BYTES || !head.subarray(0, DATA_MAGIC.length).equals(DATA_MAGIC)) return this.unmatch(s, true);
    const token = head.subarray(DATA_MAGIC.length);
    if (token.equals(PROBE_TOKEN)) return this.upgrade(s, "", true);
    const key = tokenKey(token);
    if (this.expected.has(key)) return this.upgrade(s, key, false);
    // The agent was quicker than our "stream" frame: wait for it (within the match timeout), one a token.
    if (this.parked.has(key)) return this.unmatch(s, true);
    s.data.head = head;
    s.data.parked = key;
    this.parked.set(key, s);
  }

  /** This guest starts the end-to-end TLS as its client; the stream is matched only once the host's key is checked. */
  private upgrade(s: Socket<Raw>, key: string, probe: boolean): void {
    if (s.data.closed) return;
    this.unmatch(s, false);
    s.data.upgraded = true;
    s.data.parked = undefined;
    const end = newEnd({
      resume: this.o.resume,
      onHandshake: (inner, ok, err) => {
        const why = handshakeProblem(ok, err, false) ?? (peerKeyIs(inner, this.o.hostSpki, this.o.checked) ? undefined : "the host's key is not the one this session was approved for");
        if (why) {
          log.debug(`direct connection refused: ${why}`);
          cut(inner);
          return void s.terminate();
        }
        if (probe) {
          inner.write(PROBE_OK);
          return void inner.shutdown();
        }
        // Matched only now, with the host's key checked: a wrong key never takes the waiting stream.
        const waiting = this.forget(key);
        if (!waiting || waiting.w.gone()) return cut(inner);
        waiting.w.take(inner);
        if (!this.active) this.o.onPath?.("direct");
        this.active = true;
      },
      onClose: (inner) => {
        this.o.socks.delete(inner);
        s.terminate();
      },
    });
    const [, inner] = s.upgradeTLS<End>({ isServer: false, data: end, tls: this.o.tls, socket: PIPE_HANDLERS } as Parameters<typeof s.upgradeTLS<End>>[0]);
    this.o.socks.add(inner);
  }

  private unmatch(s: Socket<Raw>, kill: boolean): void {
    if (!s.data.upgraded && s.data.timer) {
      clearTimeout(s.data.timer);
      s.data.timer = undefined;
      this.unmatched--;
    }
    if (kill) {
      s.data.closed = true;
      s.terminate();
    }
  }
}

function tokenKey(raw: Uint8Array): string {
  // Looked up by hash, as the coordinator's splicer does: map probing leaks nothing about a token.
  return createHash("sha256").update(raw).digest("base64");
}
