// The coordinator's listener: one TCP port carrying both planes. A first byte of 0x16 is a TLS
// ClientHello (control plane, mTLS); the data preamble's magic is anything else. The listener is
// Bun's native one: the data plane splices native sockets (pipe.ts), and a control connection gets
// a native TLS server on the sniffed socket, read by the Channel through a small Duplex adapter.
import type { Socket, TCPSocketListener } from "bun";
import { RefusedError, errorMessage } from "../errors.ts";
import { Admission, type Slot } from "./admission.ts";
import { logger } from "../log.ts";
import { certInfo, derToPem } from "../pki/index.ts";
import { Broker, newId, type BrokerOptions, type Peer } from "./broker.ts";
import { Channel } from "../wire/channel.ts";
import { HOST_REMOVED } from "./host-book.ts";
import { KEEPALIVE_MS, TLS_1_3, type InnerTls } from "../data/data-dial.ts";
import { newEnd, PIPE_HANDLERS, type End } from "../data/pipe.ts";
import { ClientFrame, PREAMBLE_BYTES, type ServerFrame } from "../wire/protocol.ts";
import { SocketDuplex } from "../data/socket-duplex.ts";
import { isUnavailable, UNAVAILABLE } from "../store/pg-connection.ts";
import { sweepIdleRoles } from "./role-sweep.ts";

const log = logger("coordinator");
/** Closes since the last collection that make a quiet sweep run a full garbage collection. */
const COLLECT_AFTER_CLOSES = 1000;

export interface CoordinatorOptions extends BrokerOptions {
  /** The coordinator's own TLS identity (signed by the CA). */
  certPem: string;
  keyPem: string;
}

interface ControlTls {
  duplex: SocketDuplex | undefined;
  conn: Conn;
}

/** Per connection: a pipe end (data plane) plus what the listener needs before it knows the plane. */
interface Conn extends End {
  kind: "sniff" | "data" | "control";
  head: Buffer;
  timer: ReturnType<typeof setTimeout> | undefined;
  control: SocketDuplex | undefined;
  /** Undefined for a connection refused on arrival. */
  slot: Slot | undefined;
  /** What to end at shutdown: the raw socket, then the TLS one (upgradeTLS hands out new socket objects). */
  sock: Socket<unknown>;
  client: Peer | undefined;
  /** Since when a control connection has served, approved, asked for and held nothing (see sweep). */
  idleSince: number | undefined;
}

export class Coordinator {
  readonly broker: Broker;
  readonly admission: Admission;
  private server: TCPSocketListener<Conn> | undefined;
  private readonly conns = new Set<Conn>();
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private closing = false;
  private draining = false;
  private closesOwed = 0;

  constructor(private readonly o: CoordinatorOptions) {
    this.broker = new Broker(o);
    this.admission = new Admission(o.limits);
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    // Each handler dispatches on what the connection turned out to be.
    const pipe = PIPE_HANDLERS as unknown as Required<import("bun").SocketHandler<Conn>>;
    this.server = Bun.listen<Conn>({
      hostname: host,
      port,
      allowHalfOpen: true,
      socket: {
        open: (s) => this.onOpen(s),
        data: (s, chunk) => {
          // A control connection's raw socket still hears its ciphertext: its TLS socket has it.
          if (s.data.kind === "data") pipe.data(s, chunk);
          else if (s.data.kind === "sniff") this.sniff(s, chunk);
        },
        drain: (s) => {
          if (s.data.kind === "data") pipe.drain(s);
        },
        end: (s) => {
          if (s.data.kind === "data") pipe.end(s);
          else if (s.data.kind === "sniff") s.terminate();
        },
        close: (s, err) => {
          this.forget(s.data);
          if (s.data.kind === "data") pipe.close(s, err);
          else if (s.data.kind === "control") s.data.control?.destroy();
        },
        error: () => {},
      },
    });
    const every = Math.max(50, Math.min(5_000, this.o.limits.roleTimeoutMs / 4));
    this.sweeper = setInterval(() => this.sweep(Date.now()), every);
    return { host, port: this.server.port };
  }

  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    await this.broker.close();
    for (const c of [...this.conns]) c.sock.terminate();
    this.server?.stop(true);
  }

  /** Why the coordinator cannot take new work now (for /healthz), or undefined when it can. */
  health(): string | undefined {
    return this.ready() ?? this.o.store.unavailable;
  }

  private dataConnections(): number {
    let n = 0;
    for (const c of this.conns) if (c.kind === "data") n++;
    return n;
  }

  /** Why a balancer should send nothing new here (for /readyz), or undefined. */
  ready(): string | undefined {
    if (this.closing) return "shutting down";
    if (this.draining) return "stopping: draining live streams, new connections go to other nodes";
    if (!this.server) return "not listening";
    // Cut off from the database without a word (see leases.ts): it holds nothing and can take nothing new.
    if (this.o.cluster?.leases.lapsed) return "no answer from the database: this node let go of its shares";
    return this.admission.full();
  }

  /**
   * A graceful stop (SIGTERM) of one node of several: /readyz turns 503 so the balancer sends nothing new,
   * new control connections are turned away, agents and guests are told to move (they reconnect through
   * the balancer and the share is taken over by another node), and streams under way run on until they
   * end or `timeoutMs` passes. Data connections are still taken meanwhile: streams this node issued land here.
   * Resolves with what was still live when it stopped waiting.
   */
  async drain(timeoutMs: number): Promise<{ shares: number; streams: number; moving: number }> {
    this.draining = true;
    this.broker.drain();
    const deadline = Date.now() + timeoutMs;
    const left = () => ({
      shares: this.broker.counts.shares + this.broker.counts.sharesAway,
      // Data connections, spliced here or passed on to the node that issued their token: both carry streams.
      streams: Math.max(this.broker.counts.streams, this.dataConnections()),
      // Connections here that speak for other nodes' shares: each closes once its client resumed elsewhere.
      moving: this.o.cluster?.boundCount ?? 0,
    });
    while (Date.now() < deadline) {
      const l = left();
      if (l.shares === 0 && l.streams === 0 && l.moving === 0) break;
      await Bun.sleep(100);
    }
    return left();
  }

  private onOpen(sock: Socket<Conn>): void {
    const slot = this.admission.admit(sock.remoteAddress);
    sock.data = {
      ...newEnd(),
      kind: "sniff",
      head: Buffer.alloc(0),
      timer: undefined,
      control: undefined,
      slot,
      sock: sock as Socket<unknown>,
      client: undefined,
      idleSince: undefined,
    };
    if (!slot) return void sock.terminate();
    this.conns.add(sock.data);
    sock.setNoDelay(true);
    // Nobody holds a socket open without saying what it is. The TLS socket once upgraded: ending the
    // raw socket object that `open` got does nothing after upgradeTLS, which left a stalled handshake forever.
    sock.setKeepAlive(true, KEEPALIVE_MS);
    const c = sock.data;
    c.timer = setTimeout(() => c.sock.terminate(), this.o.limits.handshakeTimeoutMs);
  }

  /** A connection's one goodbye: the raw and the TLS socket of a control connection both report it. */
  private forget(c: Conn): void {
    if (c.timer) clearTimeout(c.timer);
    c.timer = undefined;
    this.conns.delete(c);
    if (c.slot) this.admission.release(c.slot);
  }

  /** Every few seconds: idle connections without a role go (role-sweep.ts); after a surge of closes, memory is handed back. */
  private sweep(now: number): void {
    sweepIdleRoles(this.conns, this.broker.peersWithRole(), this.o.cluster, this.o.limits.roleTimeoutMs, now);
    // A surge of connections leaves TLS state and frame buffers to the garbage collector, which a quiet
    // process may not run for a long time (RSS stayed ~55 MB above its baseline for minutes after a flood).
    // Once a surge of closes is over, one full collection hands that memory back.
    const closed = this.admission.takeClosed();
    this.closesOwed += closed;
    if (this.closesOwed >= COLLECT_AFTER_CLOSES && closed < COLLECT_AFTER_CLOSES / 10) {
      this.closesOwed = 0;
      Bun.gc(true); // measured ~25 ms after the flood in scripts/flood.ts; only ever run in a quiet moment
    }
  }

  private sniff(sock: Socket<Conn>, chunk: Buffer): void {
    const c = sock.data;
    const head = c.head.length ? Buffer.concat([c.head, chunk]) : Buffer.from(chunk);
    c.head = head;
    if (head[0] === 0x16) {
      // Stopping: a control connection belongs on another node (the balancer has been told by /readyz).
      if (this.draining) return void sock.terminate();
      // The handshake timer keeps running until the TLS handshake is done.
      c.kind = "control";
      c.head = Buffer.alloc(0);
      this.startControl(sock, head);
    } else if (head.length >= PREAMBLE_BYTES) {
      clearTimeout(c.timer);
      // A bad token is cut at once below; a good one is bounded by the stream caps, not the source's.
      if (c.slot) this.admission.unbind(c.slot);
      c.kind = "data";
      c.head = Buffer.alloc(0);
      this.broker.splicer.accept(sock, head);
    } else if (head.length > 0 && head[0] !== 0x54 /* 'T' of the data magic */) {
      sock.terminate();
    }
  }

  /**
   * Native TLS server on the sniffed socket (the bytes already read are replayed as initialData), then
   * a node Duplex over the TLS socket for the Channel: frames are small, so the adapter costs little.
   */
  private startControl(sock: Socket<Conn>, head: Buffer): void {
    const addr = `${sock.remoteAddress}:${sock.remotePort}`;
    const conn = sock.data;
    const [, t] = sock.upgradeTLS<ControlTls>({
      data: { duplex: undefined, conn },
      tls: {
        key: this.o.keyPem,
        cert: this.o.certPem,
        ca: this.o.ca.certPem,
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: TLS_1_3,
      } as InnerTls,
      initialData: head,
      socket: {
        handshake: (t, ok, err) => {
          if (sock.data.timer) clearTimeout(sock.data.timer);
          sock.data.timer = undefined;
          // rejectUnauthorized is off so guests (no certificate) get in; a verified chain marks a host.
          void this.identify(t, ok && !err).then(
            (who) => {
              const peer: Peer = {
                id: newId("c"),
                addr,
                ...who,
                helloed: false,
                ch: new Channel<ClientFrame, ServerFrame>(t.data.duplex!, ClientFrame, {
                  firstFrameTimeoutMs: this.o.limits.handshakeTimeoutMs,
                  frameTimeoutMs: this.o.limits.frameTimeoutMs,
                  heartbeat: { pingMs: this.o.limits.heartbeatPingMs, deadMs: this.o.limits.heartbeatDeadMs },
                  onFrame: (f) => this.broker.handle(peer, f),
                  onClose: (err) => this.broker.drop(peer, err),
                }),
              };
              if (!conn.slot?.released) {
                conn.client = peer;
                conn.idleSince = Date.now();
              }
            },
            (e) => {
              log.warn(`${addr}: refused: ${errorMessage(e)}`);
              // A refusal the client can act on goes to it as an error frame (its reconnect loop gives up);
              // the database down is said as such, and retried.
              const said = isUnavailable(e) ? new RefusedError("unavailable", UNAVAILABLE) : e;
              if (said instanceof RefusedError)
                new Channel<ClientFrame, ServerFrame>(t.data.duplex!, ClientFrame, { onFrame: () => {} }).fail(said);
              else t.terminate();
            },
          );
        },
        // Bytes that arrive before the Channel listens wait in the Duplex's readable buffer.
        data: (t, chunk) => t.data.duplex?.feed(chunk),
        drain: (t) => t.data.duplex?.drained(),
        end: (t) => void t.data.duplex?.push(null),
        close: (t) => {
          t.data.duplex?.destroy();
          this.forget(t.data.conn);
        },
        error: (_t, e) => log.debug(`${addr}: ${e.message}`),
      },
    } as Parameters<typeof sock.upgradeTLS<ControlTls>>[0]);
    t.data.duplex = new SocketDuplex(t as Socket<unknown>);
    conn.control = t.data.duplex;
    conn.sock = t as Socket<unknown>;
  }

  /** A verified client certificate makes the peer an enrolled host, or the guest of the session it names. */
  private async identify(t: Socket<ControlTls>, authorized: boolean): Promise<Pick<Peer, "host" | "guest">> {
    if (!authorized) return {};
    const raw = t.getPeerCertificate()?.raw;
    if (!raw) return {};
    const info = certInfo(derToPem(raw, "CERTIFICATE"));
    const guest = info.uris.find((u) => u.startsWith("tessera://guest/"));
    if (guest) return { guest: { sessionId: guest.slice("tessera://guest/".length), spki: info.spki } };
    if (!info.uris.some((u) => u.startsWith("tessera://host/"))) return {};
    const status = await this.o.store.hostStatus(info.spki);
    if (status === "removed") throw new RefusedError("host_removed", HOST_REMOVED);
    if (!status)
      throw new RefusedError(
        "not_host",
        `host certificate ${info.spki} is not enrolled here; enrol this machine with \`tessera link COORDINATOR --token TOKEN\``,
      );
    return { host: { spki: info.spki, name: info.commonName } };
  }
}
