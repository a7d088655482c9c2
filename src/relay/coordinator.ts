// The coordinator's listener: one TCP port carrying both planes. A first byte of 0x16 is a TLS
// ClientHello (control plane, mTLS); the data preamble's magic is anything else. The listener is
// Bun's native one, so the data plane splices native sockets (pipe.ts); control connections are
// bridged into node:tls (small frames, where a stream adapter costs nothing that matters).
import tls from "node:tls";
import type { Socket, TCPSocketListener } from "bun";
import { ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import { certInfo, derToPem } from "../pki/index.ts";
import { Broker, newId, type BrokerOptions, type Peer } from "./broker.ts";
import { Channel } from "./channel.ts";
import { newEnd, PIPE_HANDLERS, type End } from "./pipe.ts";
import { ClientFrame, PREAMBLE_BYTES, type ServerFrame } from "./protocol.ts";
import { SocketDuplex } from "./socket-duplex.ts";

const log = logger("coordinator");

export interface CoordinatorOptions extends BrokerOptions {
  /** The coordinator's own TLS identity (signed by the CA). */
  certPem: string;
  keyPem: string;
}

/** Per connection: a pipe end (data plane) plus what the listener needs before it knows the plane. */
interface Conn extends End {
  kind: "sniff" | "data" | "control";
  head: Buffer;
  timer: ReturnType<typeof setTimeout> | undefined;
  control: SocketDuplex | undefined;
}

export class Coordinator {
  readonly broker: Broker;
  private server: TCPSocketListener<Conn> | undefined;
  private readonly ctx: tls.SecureContext;
  private readonly sockets = new Set<Socket<Conn>>();

  constructor(private readonly o: CoordinatorOptions) {
    this.broker = new Broker(o);
    this.ctx = tls.createSecureContext({ key: o.keyPem, cert: o.certPem, ca: o.ca.certPem, minVersion: "TLSv1.3" });
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    // Each handler dispatches on what the connection turned out to be.
    const pipe = PIPE_HANDLERS as unknown as Required<import("bun").SocketHandler<Conn>>;
    this.server = Bun.listen<Conn>({
      hostname: host, port, allowHalfOpen: true,
      socket: {
        open: (s) => this.onOpen(s),
        data: (s, chunk) => {
          if (s.data.kind === "data") pipe.data(s, chunk);
          else if (s.data.kind === "control") s.data.control!.feed(chunk);
          else this.sniff(s, chunk);
        },
        drain: (s) => {
          if (s.data.kind === "data") pipe.drain(s);
          else if (s.data.kind === "control") s.data.control!.drained();
        },
        end: (s) => {
          if (s.data.kind === "data") pipe.end(s);
          else if (s.data.kind === "control") s.data.control!.push(null);
          else s.terminate();
        },
        close: (s, err) => {
          this.sockets.delete(s);
          if (s.data.timer) clearTimeout(s.data.timer);
          if (s.data.kind === "data") pipe.close(s, err);
          else if (s.data.kind === "control") s.data.control!.destroy();
        },
        error: () => {},
      },
    });
    return { host, port: this.server.port };
  }

  async close(): Promise<void> {
    this.broker.close();
    for (const s of [...this.sockets]) s.terminate();
    this.server?.stop(true);
  }

  private onOpen(sock: Socket<Conn>): void {
    sock.data = { ...newEnd(), kind: "sniff", head: Buffer.alloc(0), timer: undefined, control: undefined };
    if (this.sockets.size >= this.o.limits.maxConnections) return void sock.terminate();
    this.sockets.add(sock);
    sock.setNoDelay(true);
    // Nobody holds a socket open without saying what it is.
    sock.data.timer = setTimeout(() => sock.terminate(), this.o.limits.handshakeTimeoutMs);
  }

  private sniff(sock: Socket<Conn>, chunk: Buffer): void {
    const c = sock.data;
    const head = c.head.length ? Buffer.concat([c.head, chunk]) : Buffer.from(chunk);
    c.head = head;
    if (head[0] === 0x16) {
      clearTimeout(c.timer);
      c.kind = "control";
      c.head = Buffer.alloc(0);
      c.control = new SocketDuplex(sock as Socket<unknown>);
      this.startControl(c.control, `${sock.remoteAddress}:${sock.remotePort}`);
      c.control.feed(head);
    } else if (head.length >= PREAMBLE_BYTES) {
      clearTimeout(c.timer);
      c.kind = "data";
      c.head = Buffer.alloc(0);
      this.broker.splicer.accept(sock, head);
    } else if (head.length > 0 && head[0] !== 0x54 /* 'T' of the data magic */) {
      sock.terminate();
    }
  }

  private startControl(sock: SocketDuplex, addr: string): void {
    const t = new tls.TLSSocket(sock, { isServer: true, secureContext: this.ctx, requestCert: true, rejectUnauthorized: false });
    const timer = setTimeout(() => t.destroy(), this.o.limits.handshakeTimeoutMs);
    t.on("error", (err) => {
      log.debug(`${addr}: ${err.message}`);
      t.destroy();
    });
    t.once("secure", () => {
      clearTimeout(timer);
      void this.identify(t).then((host) => {
        const peer: Peer = {
          id: newId("c"), addr, host, helloed: false,
          ch: new Channel<ClientFrame, ServerFrame>(t, ClientFrame, {
            firstFrameTimeoutMs: this.o.limits.handshakeTimeoutMs,
            onFrame: (f) => this.broker.handle(peer, f),
            onClose: () => this.broker.drop(peer),
          }),
        };
      }, (err) => {
        log.warn(`${addr}: refused: ${err.message}`);
        t.destroy();
      });
    });
  }

  /** A verified client certificate naming an enrolled host makes the peer that host. */
  private async identify(t: tls.TLSSocket): Promise<Peer["host"]> {
    if (!t.authorized) return undefined;
    const raw = t.getPeerCertificate()?.raw;
    if (!raw) return undefined;
    const info = certInfo(derToPem(raw, "CERTIFICATE"));
    if (!info.uris.some((u) => u.startsWith("tessera://host/"))) return undefined;
    if (!(await this.o.store.hostExists(info.spki))) throw new ProtocolError(`host certificate ${info.spki} is not enrolled here`);
    return { spki: info.spki, name: info.commonName };
  }
}
