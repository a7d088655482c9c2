// The coordinator's listener: one TCP port carrying both planes. A first byte of 0x16 is a TLS
// ClientHello (control plane, mTLS); the data preamble's magic is anything else. The listener is
// Bun's native one: the data plane splices native sockets (pipe.ts), and a control connection gets
// a native TLS server on the sniffed socket, read by the Channel through a small Duplex adapter.
import type { Socket, TCPSocketListener } from "bun";
import { RefusedError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { certInfo, derToPem } from "../pki/index.ts";
import { Broker, newId, type BrokerOptions, type Peer } from "./broker.ts";
import { Channel } from "../wire/channel.ts";
import { HOST_REMOVED } from "./host-book.ts";
import { TLS_1_3, type InnerTls } from "../data/data-dial.ts";
import { newEnd, PIPE_HANDLERS, type End } from "../data/pipe.ts";
import { ClientFrame, PREAMBLE_BYTES, type ServerFrame } from "../wire/protocol.ts";
import { SocketDuplex } from "../data/socket-duplex.ts";

const log = logger("coordinator");

export interface CoordinatorOptions extends BrokerOptions {
  /** The coordinator's own TLS identity (signed by the CA). */
  certPem: string;
  keyPem: string;
}

interface ControlTls {
  duplex: SocketDuplex | undefined;
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
  private readonly sockets = new Set<Socket<Conn>>();

  constructor(private readonly o: CoordinatorOptions) {
    this.broker = new Broker(o);
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    // Each handler dispatches on what the connection turned out to be.
    const pipe = PIPE_HANDLERS as unknown as Required<import("bun").SocketHandler<Conn>>;
    this.server = Bun.listen<Conn>({
      hostname: host, port, allowHalfOpen: true,
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
          this.sockets.delete(s);
          if (s.data.timer) clearTimeout(s.data.timer);
          if (s.data.kind === "data") pipe.close(s, err);
          else if (s.data.kind === "control") s.data.control?.destroy();
        },
        error: () => {},
      },
    });
    return { host, port: this.server.port };
  }

  async close(): Promise<void> {
    await this.broker.close();
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
      // The handshake timer keeps running until the TLS handshake is done.
      c.kind = "control";
      c.head = Buffer.alloc(0);
      this.startControl(sock, head);
    } else if (head.length >= PREAMBLE_BYTES) {
      clearTimeout(c.timer);
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
    const [, t] = sock.upgradeTLS<ControlTls>({
      data: { duplex: undefined },
      tls: { key: this.o.keyPem, cert: this.o.certPem, ca: this.o.ca.certPem, requestCert: true, rejectUnauthorized: false, minVersion: TLS_1_3 } as InnerTls,
      initialData: head,
      socket: {
        handshake: (t, ok, err) => {
          if (sock.data.timer) clearTimeout(sock.data.timer);
          sock.data.timer = undefined;
          // rejectUnauthorized is off so guests (no certificate) get in; a verified chain marks a host.
          void this.identify(t, ok && !err).then((who) => {
            const peer: Peer = {
              id: newId("c"), addr, ...who, helloed: false,
              ch: new Channel<ClientFrame, ServerFrame>(t.data.duplex!, ClientFrame, {
                firstFrameTimeoutMs: this.o.limits.handshakeTimeoutMs,
                onFrame: (f) => this.broker.handle(peer, f),
                onClose: () => this.broker.drop(peer),
              }),
            };
          }, (e) => {
            log.warn(`${addr}: refused: ${errorMessage(e)}`);
            // A refusal the client can act on goes to it as an error frame (its reconnect loop gives up).
            if (e instanceof RefusedError) new Channel<ClientFrame, ServerFrame>(t.data.duplex!, ClientFrame, { onFrame: () => {} }).fail(e);
            else t.terminate();
          });
        },
        // Bytes that arrive before the Channel listens wait in the Duplex's readable buffer.
        data: (t, chunk) => t.data.duplex?.feed(chunk),
        drain: (t) => t.data.duplex?.drained(),
        end: (t) => void t.data.duplex?.push(null),
        close: (t) => t.data.duplex?.destroy(),
        error: (_t, e) => log.debug(`${addr}: ${e.message}`),
      },
    } as Parameters<typeof sock.upgradeTLS<ControlTls>>[0]);
    t.data.duplex = new SocketDuplex(t as Socket<unknown>);
    sock.data.control = t.data.duplex;
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
    if (!status) throw new RefusedError("not_host", `host certificate ${info.spki} is not enrolled here; enrol this machine with \`tessera link COORDINATOR --token TOKEN\``);
    return { host: { spki: info.spki, name: info.commonName } };
  }
}
