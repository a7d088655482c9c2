// The accepting end of a direct connection, for guest and agent alike (`join`'s listener, `share
// --direct-listen`). A connection opens as a relay data connection does (magic + token), so the same
// pinned keys decide: its token must be one the coordinator gave both sides for a stream someone here
// waits on (or a session's probe token), and the far end must hold that session's approved key.
import { createHash } from "node:crypto";
import type { Socket, TCPSocketListener } from "bun";
import { logger } from "../log.ts";
import { PREAMBLE_BYTES } from "../wire/protocol.ts";
import { readPreamble } from "../wire/preamble.ts";
import { PROBE_OK } from "../wire/hints.ts";
import { cut, newEnd, PIPE_HANDLERS, type End } from "./pipe.ts";
import { handshakeProblem, peerKeyIs } from "./verified-stream.ts";
import type { InnerTls } from "./data-dial.ts";

const log = logger("direct");

/**
 * Connections not yet matched to a stream (preamble, or waiting for their stream): past this, new ones are
 * refused. Above the coordinator's pending streams a session (256): a client's burst must all fit.
 */
const MAX_UNMATCHED = 512;
/** A connection must be matched this soon after it opens. */
const MATCH_TIMEOUT_MS = 10_000;
/** A stream offered on the direct path waits this long for its connection before it is cut. */
const EXPECT_TIMEOUT_MS = 30_000;
/** Most streams waiting for a direct connection at once (the coordinator caps pending streams lower). */
const MAX_EXPECTED = 4096;
/** Most bytes a parked connection may hold (a TLS ClientHello is well under this). */
const MAX_PARKED_BYTES = 16 * 1024;
/** Most sessions whose probe token is accepted at once. */
const MAX_PROBES = 4096;

/** The raw connection: its preamble until it is read, then nothing (the TLS over it has the bytes). */
interface Raw {
  head: Buffer;
  timer?: ReturnType<typeof setTimeout>;
  upgraded: boolean;
  closed: boolean;
  parked?: string;
}

/** Who waits for a stream's direct connection: a local TCP connection, a node stream, a target. */
export interface DirectWaiter {
  /** The verified direct connection for this stream, theirs now. */
  take(inner: Socket<End>): void;
  /** The one waiting went away: a direct connection for it is closed. */
  gone(): boolean;
  /** The far end could not reach us for this stream: it goes through the relay. */
  fallback(): void;
  /** Nothing came: the stream is over. */
  fail(why: string): void;
}

/** The key the far end must hold, and where a certificate that passed is remembered (see peerKeyIs). */
export interface PeerPin {
  peerSpki: string;
  checked: { checked?: Buffer };
}

interface Expected {
  w: DirectWaiter;
  pin: PeerPin;
  timer: ReturnType<typeof setTimeout>;
  streamId: string;
}

export interface DirectAcceptorOptions {
  /** The inner TLS options, as on the relay; `isServer` as there: the agent serves the TLS, the guest is its client. */
  tls: InnerTls;
  isServer: boolean;
  /** Who the far end is, for messages ("host", "guest"). */
  peerRole: string;
  /** TLS client: where the session keeps its latest ticket (shared with the relay streams). */
  resume?: { ticket?: Buffer };
  /** Every TLS socket made here while it lives (the owner cuts them at a session's end). */
  socks?: Set<Socket<End>>;
}

export class DirectAcceptor {
  private server: TCPSocketListener<Raw> | undefined;
  private readonly expected = new Map<string, Expected>();
  private readonly byStream = new Map<string, string>();
  private readonly probes = new Map<string, PeerPin>();
  /** Connections whose token came before our stream frame did (two connections race): they wait for it, bounded. */
  private readonly parked = new Map<string, Socket<Raw>>();
  private unmatched = 0;

  constructor(private readonly o: DirectAcceptorOptions) {}

  /** Listens on every interface, IPv6 and IPv4 (IPv4 alone where the system has no IPv6), at a port the system picks. */
  listen(): number {
    try {
      return this.listenOn("::");
    } catch {
      return this.listenOn("0.0.0.0");
    }
  }

  private listenOn(hostname: string): number {
    this.server = Bun.listen<Raw>({
      hostname,
      port: 0,
      allowHalfOpen: true,
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

  /** A session's probe token (wire/hints.ts probeToken) is answered, once the far end holds `pin`'s key. */
  allowProbe(token: Buffer, pin: PeerPin): void {
    if (this.probes.size < MAX_PROBES) this.probes.set(tokenKey(token), pin);
  }

  forbidProbe(token: Buffer): void {
    this.probes.delete(tokenKey(token));
  }

  /** A stream on the direct path: `w` waits for the connection with this token (base64url), from the key in `pin`. */
  expect(token: string, streamId: string, pin: PeerPin, w: DirectWaiter): void {
    const key = tokenKey(Buffer.from(token, "base64url"));
    if (this.expected.size >= MAX_EXPECTED)
      return w.fail(`more than ${MAX_EXPECTED} streams are waiting for a direct connection; refused one`);
    const timer = setTimeout(() => {
      this.forget(key);
      w.fail(`the ${this.o.peerRole}'s direct connection did not come; the connection was closed`);
    }, EXPECT_TIMEOUT_MS);
    timer.unref?.();
    this.expected.set(key, { w, pin, timer, streamId });
    this.byStream.set(streamId, key);
    const early = this.parked.get(key);
    if (early) {
      this.parked.delete(key);
      this.upgrade(early, key, pin, false);
    }
  }

  /** No longer waiting for this stream's connection; returns who was. */
  cancel(streamId: string): DirectWaiter | undefined {
    const key = this.byStream.get(streamId);
    return key ? this.forget(key)?.w : undefined;
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

  /** The preamble: magic and a stream (or probe) token; then the end-to-end TLS starts over the connection. */
  private head(s: Socket<Raw>, chunk: Uint8Array): void {
    // After the upgrade Bun still reports the ciphertext here; the TLS socket has it.
    if (s.data.upgraded || s.data.closed) return;
    const head = Buffer.concat([s.data.head, chunk]);
    // Parked: a TLS client's first flight waits with it (bounded), for the upgrade.
    if (s.data.parked) return void (head.length > MAX_PARKED_BYTES ? this.unmatch(s, true) : (s.data.head = head));
    let preamble: ReturnType<typeof readPreamble>;
    try {
      preamble = readPreamble(head);
    } catch {
      return this.unmatch(s, true);
    }
    if (!preamble) return void (s.data.head = head);
    // A TLS client sends its ClientHello after the preamble, a TLS server nothing until it hears one.
    if (preamble.rest.length && !this.o.isServer) return this.unmatch(s, true);
    const key = tokenKey(preamble.token);
    const probe = this.probes.get(key);
    if (probe) return this.upgrade(s, "", probe, true, preamble.rest);
    const e = this.expected.get(key);
    if (e) return this.upgrade(s, key, e.pin, false, preamble.rest);
    // The far end was quicker than our stream frame: wait for it (within the match timeout), one a token.
    if (this.parked.has(key)) return this.unmatch(s, true);
    s.data.head = head;
    s.data.parked = key;
    this.parked.set(key, s);
  }

  /** Starts the end-to-end TLS; the stream is matched only once the far end's key is checked. */
  private upgrade(
    s: Socket<Raw>,
    key: string,
    pin: PeerPin,
    probe: boolean,
    rest: Buffer = s.data.head.subarray(PREAMBLE_BYTES),
  ): void {
    if (s.data.closed) return;
    this.unmatch(s, false);
    s.data.upgraded = true;
    s.data.parked = undefined;
    const end = newEnd({
      resume: this.o.resume,
      onHandshake: (inner, ok, err) => {
        const why =
          handshakeProblem(ok, err, this.o.isServer) ??
          (peerKeyIs(inner, pin.peerSpki, pin.checked)
            ? undefined
            : `the ${this.o.peerRole}'s key is not the one this session was approved for`);
        if (why) {
          log.debug(`direct connection refused: ${why}`);
          cut(inner);
          return void s.terminate();
        }
        if (probe) {
          inner.write(PROBE_OK);
          return void inner.shutdown();
        }
        // A wrong key never takes the waiting stream: matched only now.
        const waiting = this.forget(key);
        if (!waiting || waiting.w.gone()) return cut(inner);
        waiting.w.take(inner);
      },
      onClose: (inner) => {
        this.o.socks?.delete(inner);
        s.terminate();
      },
    });
    const [, inner] = s.upgradeTLS<End>({
      isServer: this.o.isServer,
      data: end,
      tls: this.o.tls,
      socket: PIPE_HANDLERS,
      ...(rest.length ? { initialData: rest } : {}),
    } as Parameters<typeof s.upgradeTLS<End>>[0]);
    this.o.socks?.add(inner);
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
