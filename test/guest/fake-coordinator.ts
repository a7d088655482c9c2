// An in-process stand-in for the coordinator and the host's agent, for the guest's stream code: the guest's
// frames travel over a real loopback control connection as real frames (wire/codec.ts both ways); each
// "open" is answered with a "stream" whose token the agent side presents too, over a real splice, running
// the end-to-end TLS as the agent does (server, the guest's key pinned) and reaching an echo target only
// for a plain open or, for a pooled one, at its "use". A test can hold answers back or refuse them.
import net from "node:net";
import type { Socket } from "bun";
import { TLS_1_3 } from "../../src/data/data-dial.ts";
import { newEnd, pair, PIPE_HANDLERS, type End } from "../../src/data/pipe.ts";
import { dialVerified } from "../../src/data/verified-stream.ts";
import { guestTls, type Approved, type StreamContext } from "../../src/guest/stream-context.ts";
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
  /** Pooled streams verified on the agent side and waiting for their "use". */
  readonly held = new Map<string, Socket<End>>();
  /** Agent-side TLS sockets of every stream, verified or not. */
  readonly agentSocks = new Set<Socket<End>>();
  agentVerified = 0;
  /** Opens not answered while this is set (a test answers them with answer()). */
  holdAnswers = false;
  /** Opens refused with this message instead of answered. */
  refuseWith: string | undefined;
  /**
   * What a "use" meets instead of the target: "retired" (the spare ends and the use is refused, as when the
   * coordinator retired it first; "refusal-first" sends the refusal before ending it), or "silent" (it
   * ends without a refusal: the stream was served and its target closed without a word), or "half-close"
   * (served, and the agent's side stops writing without a word but goes on reading: see `heard`).
   */
  onUse: "serve" | "retired" | "refusal-first" | "silent" | "half-close" = "serve";
  /** What the agent's side of a "half-close" stream has read. */
  heard = "";
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

  opens(pool?: boolean): Open[] {
    return this.frames.filter((f): f is Open => f.t === "open" && !!f.pool === !!pool);
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
    if (f.t === "open") {
      if (this.refuseWith) this.send({ t: "error", code: "limit", message: this.refuseWith, ref: f.ref });
      else if (this.holdAnswers) this.unanswered.push(f);
      else this.answer(f);
    } else if (f.t === "use") {
      const inner = this.held.get(f.streamId);
      this.held.delete(f.streamId);
      const refusal: ServerFrame = { t: "error", code: "stream", message: "not a ready pooled stream", ref: f.ref };
      if (this.onUse === "refusal-first") this.send(refusal);
      if (this.onUse === "serve") {
        if (inner) void this.toTarget(inner);
      } else if (this.onUse === "half-close" && inner) {
        inner.data.sink = {
          feed: (c) => {
            this.heard += Buffer.from(c).toString();
            this.changes.notify();
          },
          drained() {},
          ended: () => inner.end(),
          gone() {},
        };
        for (const c of inner.data.early.splice(0)) inner.data.sink.feed(c);
        inner.shutdown();
      } else inner?.terminate();
      if (this.onUse === "retired") this.send(refusal);
    }
    this.changes.notify();
  }

  private send(f: ServerFrame): void {
    this.toGuest!.write(encodeFrame(f));
  }

  /** Answers an open: the stream frame to the guest, and the agent's side of the stream. */
  answer(open: Open): void {
    const token = newToken();
    const streamId = `st-${++this.n}`;
    this.send({ t: "stream", sessionId: open.sessionId, streamId, token, ref: open.ref });
    const { pki } = this.o;
    const me = this.o.agentAs ?? pki.host;
    void dialVerified(this.splice.address, {
      token,
      tls: hostTls(me, pki.caPem),
      isServer: true,
      peerRole: "guest",
      peerSpki: pki.guest.spki,
      checked: {},
      onVerified: (inner) => {
        this.agentVerified++;
        if (open.pool) this.held.set(streamId, inner);
        else void this.toTarget(inner);
        this.changes.notify();
      },
      onRejected: () => this.changes.notify(),
      onClose: (inner) => {
        this.agentSocks.delete(inner);
        this.changes.notify();
      },
    }).then((c) => this.agentSocks.add(c.inner));
  }

  private async toTarget(inner: Socket<End>): Promise<void> {
    const t = await Bun.connect<End>({
      hostname: "127.0.0.1",
      port: this.echo.port,
      allowHalfOpen: true,
      data: newEnd(),
      socket: PIPE_HANDLERS,
    });
    pair(inner, t);
  }

  stop(): void {
    for (const s of this.agentSocks) s.terminate();
    this.splice.stop();
    this.echo.stop();
    this.fromGuest?.destroy();
    this.toGuest?.destroy();
    this.server.close();
  }
}
