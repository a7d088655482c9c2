// The guest's local listener: every TCP connection to it becomes one stream of the session. A burst of
// connections (a client's pool) is asked for a few at a time, since the coordinator cuts a control
// connection that floods it with frames, and each stream's data connection is dialled while its token
// is on the way (one round trip less per stream).
import type { Socket, TCPSocketListener } from "bun";
import { TesseraError, errorMessage } from "../errors.ts";
import { connectData } from "../data/data-dial.ts";
import { cut, newEnd, pair, PIPE_HANDLERS, type End } from "../data/pipe.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";
import { startStream, type StreamContext } from "./stream-context.ts";
import { DEFAULT_POOL, StreamPool } from "./stream-pool.ts";
import { SpareUses } from "./spare-uses.ts";

/** Most "open" frames unanswered at once: well under the coordinator's per-connection frame queue (64). */
const MAX_ASKED = 32;
/** Most local connections waiting for their turn to ask; past it new ones are refused. */
const MAX_WAITING_OPENS = 4096;

export class PortForward {
  private server: TCPSocketListener<End> | undefined;
  private readonly opening = new Map<string, Socket<End>>();
  /** Local connections whose "open" is not sent yet, and the refs of those sent and unanswered. */
  private readonly waiting: string[] = [];
  private readonly asked = new Set<string>();
  /** The data connection of each asked stream; closed if the stream is refused (the coordinator drops one left silent). */
  private readonly predialed = new Map<string, Promise<Socket<End> | Error>>();
  private pool: StreamPool | undefined;
  /** Local connections on a pooled stream (a refusal of their "use" names its ref). */
  private readonly uses: SpareUses;

  /**
   * The guest is moving to another coordinator node: nothing is asked or put to work on the old connection
   * (its answers may never come, and the share may have left the node it speaks to); local connections wait.
   */
  private paused = false;

  constructor(private readonly ctx: StreamContext) {
    this.uses = new SpareUses(ctx);
  }

  /** A move began: opens and uses wait for the new connection (see resumeOpens). */
  pauseOpens(): void {
    this.paused = true;
  }

  /** The move is through (or failed): waiting local connections are asked for on the current connection. */
  resumeOpens(): void {
    this.paused = false;
    this.askMore();
  }

  /** Listens on host:port and forwards every connection; resolves with the bound address. `pool`: ready streams kept (0: none). */
  listen(host: string, port: number, pool = DEFAULT_POOL): { host: string; port: number } {
    this.pool = pool > 0 ? new StreamPool(this.ctx, pool) : undefined;
    try {
      this.server = Bun.listen<End>({
        hostname: host,
        port,
        allowHalfOpen: true,
        socket: { ...PIPE_HANDLERS, open: (sock) => this.accept(sock) },
      });
    } catch (err) {
      const code = (err as { code?: string }).code;
      throw new TesseraError(
        "listen",
        code === "EADDRINUSE"
          ? `local port ${host}:${port} is already in use; pick another with --local`
          : `cannot listen on ${host}:${port}: ${errorMessage(err)}`,
      );
    }
    this.warm();
    return { host, port: this.server.port };
  }

  /** The session is live (approved, or resumed): the pool fills. */
  warm(): void {
    this.pool?.fill();
  }

  /** The session's streams now go this way: spares of the slower path give way to the new one. */
  pathIs(p: "direct" | "relay", told = false): void {
    this.pool?.pathIs(p, told);
  }

  owns(ref: string | undefined): boolean {
    return (
      ref !== undefined &&
      (this.asked.has(ref) || this.opening.has(ref) || this.uses.owns(ref) || !!this.pool?.owns(ref))
    );
  }

  /** Every stream in the making ends (the session ended or the guest is resuming). */
  /**
   * The guest moved to another coordinator node: opens asked on the old connection may never be answered
   * there (it closes once the move is through), so each is asked again on the new one, same ref. Should the
   * old one answer too, the later answer finds nothing waiting and its stream lapses unused.
   */
  reask(): void {
    const live = this.ctx.live();
    if (!live) return;
    for (const ref of this.asked)
      if (this.opening.has(ref)) this.ctx.send({ t: "open", sessionId: live.approved.sessionId, ref });
  }

  /** Spare streams only (the guest moved to another coordinator node, which would not know them). */
  dropSpares(): void {
    this.pool?.drop();
  }

  drop(): void {
    for (const s of [...this.opening.values()]) s.terminate();
    this.opening.clear();
    this.waiting.length = 0;
    this.asked.clear();
    for (const p of this.predialed.values()) void p.then((raw) => raw instanceof Error || raw.terminate());
    this.predialed.clear();
    this.pool?.drop();
    this.uses.drop();
  }

  /** The coordinator cut the connection for flooding it: the pool shrinks and backs off; says how many it keeps. */
  flooded(): number | undefined {
    this.pool?.flooded();
    return this.pool?.keeps;
  }

  stop(): void {
    this.server?.stop(true);
  }

  private accept(sock: Socket<End>): void {
    // What the local client sends before its stream is up waits in memory, bounded, and is delivered
    // in order with an early half-close once the stream is paired (see pipe.ts).
    const ref = this.ctx.nextRef("o");
    sock.data = newEnd({
      onClose: (s) => {
        this.opening.delete(ref);
        this.ctx.socks.delete(s);
      },
    });
    if (!this.ctx.live()) return void sock.terminate();
    if (this.waiting.length >= MAX_WAITING_OPENS) {
      this.ctx.onStreamError?.(`more than ${MAX_WAITING_OPENS} connections are waiting for a stream; refused one`);
      return void sock.terminate();
    }
    sock.setNoDelay(true);
    const pooled = this.paused ? undefined : this.pool?.take();
    if (pooled) {
      this.ctx.onPath?.(pooled.path);
      return this.uses.use(sock, pooled.streamId, pooled.inner);
    }
    this.opening.set(ref, sock);
    this.waiting.push(ref);
    this.askMore();
  }

  /** The use of the spare under `local` was turned down, so nothing reached the target: a new stream carries it. */
  private reopen(local: Socket<End>): void {
    if (local.data.closed || !this.ctx.live()) return void local.terminate();
    const ref = this.ctx.nextRef("o");
    local.data.onClose = (s) => {
      this.opening.delete(ref);
      this.ctx.socks.delete(s);
    };
    this.opening.set(ref, local);
    this.waiting.push(ref);
    this.askMore();
  }

  /** Sends "open" for waiting connections while fewer than MAX_ASKED are unanswered. */
  askMore(): void {
    let live: ReturnType<StreamContext["live"]>;
    while (!this.paused && this.asked.size < MAX_ASKED && this.waiting.length && (live = this.ctx.live())) {
      const ref = this.waiting.shift()!;
      if (!this.opening.has(ref)) continue; // the local client left while it waited
      this.asked.add(ref);
      this.ctx.send({ t: "open", sessionId: live.approved.sessionId, ref });
      // On the direct path the agent dials us: no relay connection is dialled ahead.
      if (!this.ctx.direct?.()?.active)
        this.predialed.set(
          ref,
          connectData(this.ctx.dataAddress()).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e)))),
        );
    }
  }

  /** The reply to an "open" came: returns its pre-dialled data connection and asks for the next. */
  private answered(ref: string): Promise<Socket<End> | Error> | undefined {
    if (!this.asked.delete(ref)) return undefined;
    const raw = this.predialed.get(ref);
    this.predialed.delete(ref);
    this.askMore();
    return raw;
  }

  refused(f: FrameOf<ServerFrame, "error">): void {
    // Asked just before a move, of a node the share has left: asked again once the move is through.
    if (this.paused && f.code === "no_session" && this.opening.has(f.ref!) && this.asked.has(f.ref!)) {
      void this.answered(f.ref!)?.then((raw) => raw instanceof Error || raw.terminate());
      this.waiting.unshift(f.ref!);
      return;
    }
    if (this.pool?.owns(f.ref)) return this.pool.refused(f);
    if (this.uses.owns(f.ref)) {
      const again = this.uses.refused(f.ref!);
      // Not served (the spare was retired first): the client's bytes go on a new stream, unseen.
      if (again) return this.reopen(again);
      return this.ctx.onStreamError?.(f.message);
    }
    void this.answered(f.ref!)?.then((raw) => raw instanceof Error || raw.terminate());
    const sock = this.opening.get(f.ref!);
    if (!sock) return;
    this.opening.delete(f.ref!);
    sock.terminate();
    this.ctx.onStreamError?.(f.message);
  }

  /** The host's agent could not serve one of our streams: say why; the coordinator cuts its connection. */
  streamRefused(f: FrameOf<ServerFrame, "refused">): void {
    this.uses.streamRefused(f.streamId);
    this.ctx.onStreamError?.(`a connection was refused by the host's side: ${f.reason}`);
  }

  /** `fellBack`: the local connection of a direct stream whose agent could not reach us; it takes the relay now. */
  async ready(f: FrameOf<ServerFrame, "stream">, fellBack?: Socket<End>): Promise<void> {
    if (!fellBack && this.pool?.owns(f.ref)) return this.pool.answered(f);
    const predialed = fellBack ? undefined : this.answered(f.ref);
    const local = fellBack ?? this.opening.get(f.ref);
    if (!local || !this.ctx.live()) {
      void predialed?.then((raw) => raw instanceof Error || raw.terminate());
      return;
    }
    this.opening.delete(f.ref);
    const socks = this.ctx.socks;
    socks.add(local);
    const direct = f.direct ? this.ctx.direct?.() : undefined;
    if (direct) {
      void predialed?.then((raw) => raw instanceof Error || raw.terminate());
      return direct.expectSocket(
        f,
        local,
        () => void this.ready({ ...f, direct: undefined }, local),
        (m) => this.ctx.onStreamError?.(m),
      );
    }
    this.ctx.onPath?.("relay");
    let inner: Socket<End>;
    try {
      const raw = await (predialed ?? connectData(this.ctx.dataAddress()));
      if (raw instanceof Error) throw raw;
      inner = startStream(this.ctx, raw, f.token, {
        onVerified: (inner) => (local.data.closed ? cut(inner) : pair(local, inner)),
        onRejected: (why) => {
          this.ctx.onStreamError?.(`stream failed: ${why}`);
          local.terminate();
        },
        // Closed before it was paired (refused, failed handshake): the local client goes too.
        onClose: (inner) => inner.data.peer || local.terminate(),
      }).inner;
    } catch (err) {
      this.ctx.onStreamError?.(`stream failed: ${errorMessage(err)}`);
      return local.terminate();
    }
    if (!this.ctx.live() || local.data.closed) return cut(inner);
    // The local client leaving before the handshake ends the stream.
    local.data.onClose = (s) => {
      socks.delete(s);
      if (!s.data.peer) cut(inner);
    };
  }
}
