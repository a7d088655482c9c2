// An in-process stand-in for the coordinator and the host's agent, for the guest's channel code: the guest's
// frames travel over a real loopback control connection as real frames (wire/codec.ts both ways); a channel
// "open" is answered with a "stream" whose token the agent side presents too, over a real splice, running the
// end-to-end TLS as the agent does (server, the guest's key pinned) and serving the channel with the agent's
// own code (host/session-channels.ts); each stream "open" is admitted to an echo target. A test can hold
// answers back or refuse them.
import net from "node:net";
import type { Socket } from "bun";
import { TLS_1_3 } from "../../src/data/data-dial.ts";
import type { End } from "../../src/data/pipe.ts";
import { dialVerified } from "../../src/data/verified-stream.ts";
import { guestTls, type Approved, type StreamContext } from "../../src/guest/stream-context.ts";
import { SessionChannels } from "../../src/host/session-channels.ts";
import type { ControlClient } from "../../src/wire/control-client.ts";
import { encodeFrame, FrameDecoder } from "../../src/wire/codec.ts";
import { ClientFrame, ServerFrame, type FrameOf } from "../../src/wire/protocol.ts";
import { Changes, EchoTarget, hostTls, newToken, TestSplice, type Party, type Pki } from "../data/fixtures.ts";

type Open = FrameOf<ClientFrame, "open">;

export interface FakeOptions {
  pki: Pki;
  /** The key the agent side holds (the host's, unless a test swaps it). */
  agentAs?: Party;
}

export class FakeCoordinator {
  readonly changes = new Changes();
  readonly frames: ClientFrame[] = [];
  readonly splice = new TestSplice();
  readonly echo = new EchoTarget();
  /** Agent-side TLS sockets of every stream, verified or not. */
  readonly agentSocks = new Set<Socket<End>>();
  agentVerified = 0;
  /** Opens not answered while this is set (a test answers them with answer()). */
  holdAnswers = false;
  /** Opens refused with this message instead of answered. */
  refuseWith: string | undefined;
  /** Stream opens refused with this message (channel opens are still answered). */
  refuseStreamsWith: string | undefined;
  /** What the agent side reported on the channel's streams. */
  readonly reports: ClientFrame[] = [];
  readonly channels = new SessionChannels(
    () => ({ ch: { closed: false }, send: (f: ClientFrame) => this.reports.push(f) }) as unknown as ControlClient,
  );
  readonly unanswered: Open[] = [];
  errors: string[] = [];
  readonly approved: Approved;
  private server!: net.Server;
  private toGuest: net.Socket | undefined;
  private fromGuest!: net.Socket;
  private n = 0;
  private refs = 0;
  pf?: { ready(f: FrameOf<ServerFrame, "stream">): unknown; refused(f: FrameOf<ServerFrame, "error">): unknown };

  private constructor(private readonly o: FakeOptions) {
    this.approved = {
      t: "approved",
      requestId: "req-1",
      sessionId: "sess-1",
      cert: o.pki.guest.certPem,
      hostSpki: o.pki.host.spki,
      target: `127.0.0.1:${this.echo.port}`,
      idleTimeoutSec: 60,
    };
  }

  static async start(o: FakeOptions): Promise<FakeCoordinator> {
    const f = new FakeCoordinator(o);
    await f.connect();
    return f;
  }

  /** The guest's view: the StreamContext a session gives its port forward. */
  context(): StreamContext {
    const { pki } = this.o;
    return {
      send: (frame) => this.fromGuest.write(encodeFrame(frame)),
      dataAddress: () => this.splice.address,
      live: () => ({ approved: this.approved }),
      nextRef: (prefix) => {
        this.refs++;
        this.changes.notify();
        return `${prefix}${this.refs}`;
      },
      verify: () => ({
        tls: guestTls(pki.guest.keyPem, pki.guest.certPem, pki.caPem, TLS_1_3),
        isServer: false,
        peerRole: "host",
        peerSpki: pki.host.spki,
        checked: {},
      }),
      socks: new Set(),
      onStreamError: (m) => {
        this.errors.push(m);
        this.changes.notify();
      },
    };
  }

  /** How many refs the guest has taken (one per local connection, and per spare asked). */
  get refsTaken(): number {
    return this.refs;
  }

  /** Channel opens (`channel`), or stream opens. */
  opens(channel?: boolean): Open[] {
    return this.frames.filter((f): f is Open => f.t === "open" && !!f.channel === !!channel);
  }

  /** Sends a ping through the guest's control connection and waits for it: every frame sent before has arrived. */
  async barrier(): Promise<void> {
    const before = this.frames.filter((f) => f.t === "ping").length;
    this.fromGuest.write(encodeFrame({ t: "ping" }));
    await this.changes.until(() => this.frames.filter((f) => f.t === "ping").length > before);
  }

  until(cond: () => boolean): Promise<void> {
    return this.changes.until(cond);
  }

  private async connect(): Promise<void> {
    const decoder = new FrameDecoder(ClientFrame);
    this.server = net.createServer((sock) => {
      this.toGuest = sock;
      sock.on("data", (c: Buffer) => {
        for (const f of decoder.push(c)) this.onFrame(f);
      });
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    const { port } = this.server.address() as net.AddressInfo;
    this.fromGuest = net.connect(port, "127.0.0.1");
    await new Promise<void>((r) => this.fromGuest.once("connect", () => r()));
    const back = new FrameDecoder(ServerFrame);
    // Replies go to the port forward as the guest's session would route them.
    this.fromGuest.on("data", (c: Buffer) => {
      for (const f of back.push(c)) {
        if (f.t === "stream") void this.pf?.ready(f);
        else if (f.t === "error") this.pf?.refused(f);
      }
    });
    await this.changes.until(() => this.toGuest !== undefined);
  }

  private onFrame(f: ClientFrame): void {
    this.frames.push(f);
    if (f.t === "open" && f.channel) {
      if (this.refuseWith) this.send({ t: "error", code: "limit", message: this.refuseWith, ref: f.ref });
      else if (this.holdAnswers) this.unanswered.push(f);
      else this.answer(f);
    } else if (f.t === "open" && f.via !== undefined && f.mux !== undefined) {
      const via = f.via;
      for (const mux of f.mux) {
        const streamId = `st-${++this.n}`;
        const ref = `${f.ref}.${mux}`;
        if (this.refuseStreamsWith) {
          this.send({ t: "error", code: "limit", message: this.refuseStreamsWith, ref });
          this.channels.refuse(via, mux);
        } else
          this.channels.admit(
            { via, mux, streamId },
            this.channelClient(),
            { host: "127.0.0.1", port: this.echo.port, label: "echo" },
            () => this.send({ t: "error", code: "stream", message: "the channel is gone", ref }),
          );
      }
    }
    this.changes.notify();
  }

  private channelClient(): ControlClient {
    return { ch: { closed: false }, send: (f: ClientFrame) => this.reports.push(f) } as unknown as ControlClient;
  }

  private send(f: ServerFrame): void {
    this.toGuest!.write(encodeFrame(f));
  }

  /** Answers a channel open: the stream frame to the guest, and the agent's side of the channel. */
  answer(open: Open): void {
    const token = newToken();
    const streamId = `c-${++this.n}`;
    this.send({ t: "stream", sessionId: open.sessionId, streamId, token, ref: open.ref });
    const { pki } = this.o;
    const me = this.o.agentAs ?? pki.host;
    this.channels.expect(streamId);
    void dialVerified(this.splice.address, {
      token,
      tls: hostTls(me, pki.caPem),
      isServer: true,
      peerRole: "guest",
      peerSpki: pki.guest.spki,
      checked: {},
      onVerified: (inner) => {
        this.agentVerified++;
        this.channels.adopt(streamId, open.sessionId, inner);
        this.changes.notify();
      },
      onRejected: () => {
        this.channels.failed(streamId);
        this.changes.notify();
      },
      onClose: (inner) => {
        this.agentSocks.delete(inner);
        this.changes.notify();
      },
    }).then((c) => this.agentSocks.add(c.inner));
  }

  stop(): void {
    this.channels.stop();
    for (const s of this.agentSocks) s.terminate();
    this.splice.stop();
    this.echo.stop();
    this.fromGuest?.destroy();
    this.toGuest?.destroy();
    this.server.close();
  }
}
