// The coordinator's listener: one TCP port carrying both planes. A first byte of 0x16 is a TLS
// ClientHello (control plane, mTLS); the data preamble's magic is anything else.
import net from "node:net";
import tls from "node:tls";
import { ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import { certInfo, derToPem } from "../pki/index.ts";
import { Broker, newId, type BrokerOptions, type Peer } from "./broker.ts";
import { Channel } from "./channel.ts";
import { ClientFrame, PREAMBLE_BYTES, type ServerFrame } from "./protocol.ts";

const log = logger("coordinator");

export interface CoordinatorOptions extends BrokerOptions {
  /** The coordinator's own TLS identity (signed by the CA). */
  certPem: string;
  keyPem: string;
}

export class Coordinator {
  readonly broker: Broker;
  private readonly server: net.Server;
  private readonly ctx: tls.SecureContext;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly o: CoordinatorOptions) {
    this.broker = new Broker(o);
    this.ctx = tls.createSecureContext({ key: o.keyPem, cert: o.certPem, ca: o.ca.certPem, minVersion: "TLSv1.3" });
    this.server = net.createServer({ allowHalfOpen: true }, (sock) => this.onConnection(sock));
    this.server.maxConnections = o.limits.maxConnections;
  }

  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        const a = this.server.address() as net.AddressInfo;
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  async close(): Promise<void> {
    await this.broker.close();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private onConnection(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.on("close", () => this.sockets.delete(sock));
    sock.on("error", () => {});
    sock.setNoDelay(true);
    const addr = `${sock.remoteAddress}:${sock.remotePort}`;
    let head: Buffer = Buffer.alloc(0);
    // Nobody holds a socket open without saying what it is.
    const timer = setTimeout(() => sock.destroy(), this.o.limits.handshakeTimeoutMs);
    const onData = (chunk: Buffer) => {
      head = head.length ? Buffer.concat([head, chunk]) : chunk;
      if (head[0] === 0x16) {
        sock.off("data", onData);
        sock.pause();
        sock.unshift(head);
        clearTimeout(timer);
        this.startControl(sock, addr);
      } else if (head.length >= PREAMBLE_BYTES) {
        sock.off("data", onData);
        clearTimeout(timer);
        this.broker.splicer.accept(sock, head);
      } else if (head.length > 0 && head[0] !== 0x54 /* 'T' of the data magic */) {
        sock.destroy();
      }
    };
    sock.on("data", onData);
  }

  private startControl(sock: net.Socket, addr: string): void {
    const t = new tls.TLSSocket(sock, { isServer: true, secureContext: this.ctx, requestCert: true, rejectUnauthorized: false });
    const timer = setTimeout(() => t.destroy(), this.o.limits.handshakeTimeoutMs);
    t.on("error", (err) => {
      log.debug(`${addr}: ${err.message}`);
      t.destroy();
    });
    t.once("secure", () => {
      clearTimeout(timer);
      void this.identify(t).then((who) => {
        const peer: Peer = {
          id: newId("c"), addr, ...who, helloed: false,
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

  /** A verified client certificate makes the peer an enrolled host, or the guest of the session it names. */
  private async identify(t: tls.TLSSocket): Promise<Pick<Peer, "host" | "guest">> {
    if (!t.authorized) return {};
    const raw = t.getPeerCertificate()?.raw;
    if (!raw) return {};
    const info = certInfo(derToPem(raw, "CERTIFICATE"));
    const guest = info.uris.find((u) => u.startsWith("tessera://guest/"));
    if (guest) return { guest: { sessionId: guest.slice("tessera://guest/".length), spki: info.spki } };
    if (!info.uris.some((u) => u.startsWith("tessera://host/"))) return {};
    if (!(await this.o.store.hostExists(info.spki))) throw new ProtocolError(`host certificate ${info.spki} is not enrolled here`);
    return { host: { spki: info.spki, name: info.commonName } };
  }
}
