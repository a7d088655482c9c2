// Real fixtures for in-process data-plane tests: a CA with host and guest certificates made by src/pki,
// the inner TLS options each side uses, a splice on loopback that pairs two data connections by their
// preamble's token (the coordinator's shape, without its bookkeeping), and an echo target. Everything
// listens on 127.0.0.1 port 0; every listener and socket is closed by the test that made it.
import { randomBytes } from "node:crypto";
import type { Socket, TCPSocketListener } from "bun";
import { TLS_1_3, type InnerTls } from "../../src/data/data-dial.ts";
import { newEnd, pair, PIPE_HANDLERS, type End } from "../../src/data/pipe.ts";
import { createCA, exportPrivateKeyPem, generateKeyPair, issueCert, spkiFingerprint } from "../../src/pki/index.ts";
import { readPreamble } from "../../src/wire/preamble.ts";

export interface Party {
  keyPem: string;
  certPem: string;
  spki: string;
}

export interface Pki {
  caPem: string;
  host: Party;
  guest: Party;
  /** Same CA, another key: what a swapped peer would hold. */
  other: Party;
  /** Another CA altogether. */
  stranger: Party & { caPem: string };
}

async function party(ca: { certPem: string; keyPem: string }, cn: string): Promise<Party> {
  const keys = await generateKeyPair();
  const certPem = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    publicKey: keys.publicKey,
    commonName: cn,
    dnsNames: [cn],
    usage: "both",
    now: new Date(),
    validForSeconds: 3600,
  });
  return { keyPem: await exportPrivateKeyPem(keys.privateKey), certPem, spki: spkiFingerprint(certPem) };
}

export async function makePki(): Promise<Pki> {
  const ca = await createCA({ commonName: "test-ca", now: new Date() });
  const strangerCa = await createCA({ commonName: "stranger-ca", now: new Date() });
  return {
    caPem: ca.certPem,
    host: await party(ca, "host"),
    guest: await party(ca, "guest"),
    other: await party(ca, "other"),
    stranger: { ...(await party(strangerCa, "stranger")), caPem: strangerCa.certPem },
  };
}

/** The agent's inner TLS: it serves, and requires a client certificate from the CA (host/agent.ts). */
export function hostTls(p: Party, caPem: string): InnerTls {
  return {
    key: p.keyPem,
    cert: p.certPem,
    ca: caPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: TLS_1_3,
  } as InnerTls;
}

/** The guest's inner TLS: the chain is checked, names are not (guest/stream-context.ts guestTls). */
export function guestTlsOf(p: Party, caPem: string): InnerTls {
  return { key: p.keyPem, cert: p.certPem, ca: caPem, rejectUnauthorized: false, minVersion: TLS_1_3 } as InnerTls;
}

export const newToken = () => randomBytes(32).toString("base64url");

/**
 * A splice on loopback: each data connection's preamble names a token; the second connection with a
 * token is paired with the first (bytes after the preamble are delivered first), as the coordinator's
 * splicer does once both ends are in. A connection whose preamble is bad is cut.
 */
export class TestSplice {
  private readonly server: TCPSocketListener<End & { head?: Buffer }>;
  private readonly waiting = new Map<string, Socket<End>>();
  /** Sockets of every connection, for the test's cleanup. */
  readonly socks = new Set<Socket<End>>();
  refusedPreambles = 0;

  constructor() {
    this.server = Bun.listen<End & { head?: Buffer }>({
      hostname: "127.0.0.1",
      port: 0,
      allowHalfOpen: true,
      socket: {
        ...PIPE_HANDLERS,
        open: (s) => {
          s.data = newEnd();
          this.socks.add(s);
        },
        data: (s, chunk) => {
          if (s.data.peer || s.data.early.length) return PIPE_HANDLERS.data!(s, chunk);
          const head = s.data.head ? Buffer.concat([s.data.head, chunk]) : Buffer.from(chunk);
          let p: ReturnType<typeof readPreamble>;
          try {
            p = readPreamble(head);
          } catch {
            this.refusedPreambles++;
            return void s.terminate();
          }
          if (!p) return void (s.data.head = head);
          s.data.head = undefined;
          if (p.rest.length) {
            s.data.early.push(Buffer.from(p.rest));
            s.data.earlyBytes += p.rest.length;
          }
          const key = p.token.toString("base64url");
          const first = this.waiting.get(key);
          if (!first) return void this.waiting.set(key, s);
          this.waiting.delete(key);
          pair(first, s);
        },
        close: (s, err) => {
          this.socks.delete(s);
          PIPE_HANDLERS.close!(s, err);
        },
      },
    });
  }

  get address(): { host: string; port: number } {
    return { host: "127.0.0.1", port: this.server.port };
  }

  stop(): void {
    for (const s of this.socks) s.terminate();
    this.server.stop(true);
  }
}

/**
 * An echo target: what a connection sends comes back; when it half-closes, the target half-closes after
 * echoing (so a test sees FIN travel both ways). `paused`: reads nothing until resume(), to fill the path.
 */
export class EchoTarget {
  readonly server: TCPSocketListener<{ id: number }>;
  readonly conns = new Set<Socket<{ id: number }>>();
  /** Resolved with each connection's total bytes once it half-closes. */
  readonly ended: number[] = [];
  readonly changes = new Changes();
  private n = 0;
  private readonly counts = new Map<number, number>();

  constructor(opts: { paused?: boolean } = {}) {
    this.server = Bun.listen<{ id: number }>({
      hostname: "127.0.0.1",
      port: 0,
      allowHalfOpen: true,
      socket: {
        open: (s) => {
          s.data = { id: this.n++ };
          this.conns.add(s);
          if (opts.paused) s.pause();
          this.changes.notify();
        },
        data: (s, chunk) => {
          this.counts.set(s.data.id, (this.counts.get(s.data.id) ?? 0) + chunk.length);
          if (!opts.paused) s.write(chunk);
        },
        end: (s) => {
          this.ended.push(this.counts.get(s.data.id) ?? 0);
          s.shutdown();
          this.changes.notify();
        },
        close: (s) => {
          this.conns.delete(s);
          this.changes.notify();
        },
        error() {},
      },
    });
  }

  get port(): number {
    return this.server.port;
  }

  /** Waits until `n` connections have half-closed here. */
  endedCount(n: number): Promise<void> {
    return this.changes.until(() => this.ended.length >= n);
  }

  stop(): void {
    for (const s of this.conns) s.terminate();
    this.server.stop(true);
  }
}

/** Connects a client to `port` with pipe-like state, collecting what it reads; resolves when it ends or closes. */
export async function client(port: number): Promise<{
  sock: Socket<{ got: Buffer[] }>;
  got: () => Buffer;
  ended: Promise<void>;
  closed: Promise<boolean>;
}> {
  const ended = Promise.withResolvers<void>();
  const closed = Promise.withResolvers<boolean>();
  const sock = await Bun.connect<{ got: Buffer[] }>({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    data: { got: [] },
    socket: {
      data: (s, c) => void s.data.got.push(Buffer.from(c)),
      end: () => ended.resolve(),
      close: (_s, err) => {
        ended.resolve();
        closed.resolve(!err);
      },
      error() {},
    },
  });
  return { sock, got: () => Buffer.concat(sock.data.got), ended: ended.promise, closed: closed.promise };
}

/** Wakes waiters whenever something they watch may have changed: tests wait on events, never on time. */
export class Changes {
  private waiters: (() => void)[] = [];
  notify(): void {
    for (const f of this.waiters.splice(0)) f();
  }
  async until(cond: () => boolean): Promise<void> {
    while (!cond()) await new Promise<void>((r) => this.waiters.push(r));
  }
}

/** A promise and its resolve, for waiting on one callback. */
export function signal<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  const { promise, resolve } = Promise.withResolvers<T>();
  return { promise, resolve };
}
