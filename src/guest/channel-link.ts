// The guest's end of a session's data channel: one connection (direct when the path is proven, else
// through the coordinator), one end-to-end TLS with the host's key pinned, and every stream of the session
// inside it. Asked for as soon as the session is live, re-established (direct, then relay) without a new
// yes when the network breaks it, and renewed when told (the path went direct, a coordinator node is
// stopping): new streams take the new channel while the old one ends once its last stream has.
import type { Socket } from "bun";
import { TesseraError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { connectData } from "../data/data-dial.ts";
import type { MuxChannel } from "../data/mux.ts";
import { channelOver } from "../data/channel-socket.ts";
import type { MuxStream } from "../data/mux-stream.ts";
import { cut, type End } from "../data/pipe.ts";
import { MuxReset } from "../wire/mux-frames.ts";
import { refusal } from "../wire/control-client.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";
import { OpenPacer } from "./open-pacer.ts";
import { startStream, type StreamContext } from "./stream-context.ts";

const log = logger("guest:channel");
/** Channel stream numbers are u32; a channel that used them all is replaced by a fresh one. */
const LAST_ID = 0xffffffff;
/** Refusals of a stream that say nothing of the stream itself, only of where it was asked (a move under way). */
const MOMENTARY = new Set(["no_channel", "no_session", "unavailable"]);
/** A channel asked where the session is not now is asked again after this, doubling, this many times at most. */
const REASK_MS = 50;
const MAX_REASKS = 12;
/** Streams waiting for a channel (being set up, or a move under way); past it new ones are refused. */
const MAX_WAITING = 4096;

type Path = "direct" | "relay";

interface Live {
  /** The coordinator's id of the channel (streams name it in `open`). */
  id: string;
  /** Prefix of this channel's stream refs: a refusal names the channel and the stream. */
  tag: string;
  mux: MuxChannel;
  inner: Socket<End>;
  path: Path;
  next: number;
}

export interface StreamWaiter {
  ready(stream: MuxStream): void;
  /** No stream: no channel could be had, or it took no more. */
  fail(err: Error): void;
  /** The coordinator refused the stream after it was handed over (its words); otherwise they are shown. */
  refused?(err: Error): void;
}

export class ChannelLink {
  private current: Live | undefined;
  /** Channels replaced by a newer one, ending once their last stream has. */
  private readonly retired = new Set<Live>();
  /** The ref of the channel asked for and not yet up. */
  private asking: string | undefined;
  /** Bumped on drop: a channel asked for before it is not this session's any more. */
  private generation = 0;
  private readonly waiting: StreamWaiter[] = [];
  /** Streams whose opening a caller waits on (a node stream: refused ones reject with the coordinator's words). */
  private readonly onRefusal = new Map<string, (err: Error) => void>();
  private paused = false;
  private channels = 0;
  /** New streams go to the coordinator in paced `open` frames (open-pacer.ts). */
  private readonly opens = new OpenPacer((via, ids) => this.sendOpens(via, ids));
  /** Channel asks refused for a reason of the moment in a row (see askAgain); back to 0 once one is up. */
  private reasks = 0;
  /** A renewal asked for while a channel was on its way: done once that one is up (see renew). */
  private renewOnUp: Path | undefined;
  /** Set while the session's end waits for its channels to finish (see settle). */
  private settled: (() => void) | undefined;

  constructor(private readonly ctx: StreamContext) {}

  /** The path the session's streams take now, if a channel is up. */
  get path(): Path | undefined {
    return this.current?.path;
  }

  /**
   * A stream on the channel: at once when one is up (the caller's bytes may go before the coordinator's
   * word; the agent holds them), else once it is. `onRefused`: the coordinator's refusal of this stream.
   */
  open(w: StreamWaiter): void {
    const live = this.usable();
    if (live) return this.openOn(live, w);
    if (this.waiting.length >= MAX_WAITING)
      return w.fail(new TesseraError("limit", `more than ${MAX_WAITING} connections are waiting for the channel`));
    this.waiting.push(w);
    this.ensure();
  }

  /** Asks for a channel if none is up or on its way (the session just became live, or came back). */
  ensure(): void {
    if (this.asking || this.usable() || !this.ctx.live()) return;
    const live = this.ctx.live()!;
    const ref = this.ctx.nextRef("k");
    this.asking = ref;
    this.ctx.send({ t: "open", sessionId: live.approved.sessionId, ref, channel: true });
  }

  /**
   * A fresh channel for new streams (the path changed, or the node this one passes through is stopping);
   * the current one ends once its streams have. A direct channel told "direct" again is kept.
   */
  renew(path: Path): void {
    // Asked for before this word (under the old routing): once it is up, it gives way in turn.
    if (this.asking) {
      this.renewOnUp = path;
      return;
    }
    if (this.current?.path === "direct" && path === "direct") return;
    if (this.current) this.retire(this.current);
    this.ensure();
  }

  /** A move to another coordinator node began: new streams wait for it to finish (see resume). */
  pause(): void {
    this.paused = true;
  }

  /** The move is through: `moved` when the session now lives on another node (a channel of its own there). */
  resume(moved: boolean): void {
    this.paused = false;
    if (moved) {
      if (this.current) this.retire(this.current);
      // A channel asked of the old node is the old node's: asked again here.
      this.asking = undefined;
    }
    this.ensure();
    this.serveWaiting();
  }

  owns(ref: string | undefined): boolean {
    return ref !== undefined && (ref === this.asking || /^c\d+\.\d+$/.test(ref));
  }

  /** The coordinator's answer to the channel asked for: its tokens (and the direct path's, when proven). */
  ready(f: FrameOf<ServerFrame, "stream">): void {
    if (f.ref !== this.asking) return;
    const generation = this.generation;
    // Stale also when asked again meanwhile (renew, resume): only the latest asking becomes the channel.
    const stale = () => generation !== this.generation || !this.ctx.live() || this.asking !== f.ref;
    /**
     * `final`: the far end answered and was refused (a wrong key, a failed handshake). Otherwise the
     * connection did not get through (a balancer still sending it to a node that is stopping, a blip): it is
     * asked for again a few times before the streams waiting for it are failed.
     */
    const failed = (why: string, final = true) => {
      if (stale()) return;
      if (!final && this.reasks < MAX_REASKS) return this.askAgain(f.ref);
      this.askFailed(f.ref, new TesseraError("stream", `the data channel failed: ${why}`));
    };
    const up = (inner: Socket<End>, path: Path) => {
      if (stale()) return cut(inner);
      if (this.asking === f.ref) this.asking = undefined;
      this.up(f.streamId, inner, path);
    };
    const direct = f.direct ? this.ctx.direct?.() : undefined;
    if (direct)
      return direct.expect(f, {
        take: (inner) => up(inner, "direct"),
        gone: stale,
        fallback: () => void this.viaRelay(f, stale, up, failed),
        fail: failed,
      });
    void this.viaRelay(f, stale, up, failed);
  }

  /** The coordinator refused the channel or one of its streams (error frames name their ref). */
  refused(f: FrameOf<ServerFrame, "error">): void {
    const ref = f.ref!;
    if (ref === this.asking) {
      // Asked where the session is not now (a move under way): asked again shortly; streams keep waiting.
      if (MOMENTARY.has(f.code) && this.ctx.live() && this.reasks < MAX_REASKS) return this.askAgain(ref);
      return this.askFailed(ref, refusal(f));
    }
    const [tag, n] = ref.split(".");
    const ch = [this.current, ...this.retired].find((c) => c?.tag === tag);
    const caller = this.onRefusal.get(ref);
    this.onRefusal.delete(ref);
    const stream = ch?.mux.stream(Number(n));
    // Its channel is not known where the session lives now (it moved): the stream may go again, unseen.
    const momentary = MOMENTARY.has(f.code) && !!this.ctx.live();
    if (caller) caller(refusal(f));
    else if (!momentary) this.ctx.onStreamError?.(f.message);
    // The channel is unknown where the session lives now (it moved): a fresh one, before the stream goes again.
    if (f.code === "no_channel" && ch === this.current && ch) this.renew(ch.path);
    if (stream) stream.retryable = momentary;
    stream?.reset(MuxReset.refused);
  }

  /**
   * The session ended at the coordinator: what the host's side already sent (a last answer and its FIN) is
   * still on its way down the channel, which may come after the control plane's word. Each channel ends once
   * its streams have (the agent closes its end too), or after `ms`; resolves then. Nothing new is opened.
   */
  settle(ms: number, why: Error): Promise<void> {
    this.generation++;
    this.asking = undefined;
    this.failWaiting(why);
    const all = [this.current, ...this.retired].filter((c): c is Live => !!c && !c.mux.closed);
    this.current = undefined;
    for (const c of all) this.retire(c);
    if (!all.some((c) => !c.mux.closed)) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      timer.unref?.();
      this.settled = () => {
        if (all.some((c) => !c.mux.closed)) return;
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private askAgain(ref: string): void {
    if (this.asking === ref) this.asking = undefined;
    const ms = Math.min(REASK_MS * 2 ** this.reasks++, 1_000);
    setTimeout(() => this.ensure(), ms).unref?.();
  }

  /** The channel asked for as `ref` will not come: what waits for it fails; asked again if told to renew meanwhile. */
  private askFailed(ref: string, err: Error): void {
    if (this.asking === ref) this.asking = undefined;
    this.failWaiting(err);
    const again = this.renewOnUp;
    this.renewOnUp = undefined;
    if (again) this.ensure();
  }

  /** The session is over, or detached: every channel goes, and what waits for one fails. */
  drop(why: Error): void {
    this.generation++;
    this.asking = undefined;
    this.renewOnUp = undefined;
    this.failWaiting(why);
    for (const f of this.onRefusal.values()) f(why);
    this.onRefusal.clear();
    const all = [this.current, ...this.retired];
    this.current = undefined;
    this.retired.clear();
    for (const c of all) c?.mux.close();
  }

  private usable(): Live | undefined {
    return this.paused || !this.current || this.current.mux.closed ? undefined : this.current;
  }

  private openOn(live: Live, w: StreamWaiter): void {
    if (live.next > LAST_ID) {
      this.renew(live.path);
      return this.open(w);
    }
    const id = live.next++;
    let stream: MuxStream;
    try {
      stream = live.mux.open(id);
    } catch (err) {
      return w.fail(new TesseraError("limit", `the data channel took no more streams: ${errorMessage(err)}`));
    }
    const ref = `${live.tag}.${id}`;
    const refused = w.refused;
    if (refused) {
      this.onRefusal.set(ref, refused);
      void stream.whenClosed().then(() => this.onRefusal.delete(ref));
    }
    this.opens.add(live.id, id);
    w.ready(stream);
  }

  private sendOpens(via: string, ids: number[]): void {
    const on = this.ctx.live();
    const live = [this.current, ...this.retired].find((c) => c?.id === via);
    if (!on || !live || live.mux.closed) return;
    this.ctx.send({ t: "open", sessionId: on.approved.sessionId, ref: live.tag, via, mux: ids });
  }

  private async viaRelay(
    f: FrameOf<ServerFrame, "stream">,
    stale: () => boolean,
    up: (inner: Socket<End>, path: Path) => void,
    failed: (why: string, final?: boolean) => void,
  ): Promise<void> {
    const raw = await connectData(this.ctx.dataAddress()).catch((e: unknown) =>
      e instanceof Error ? e : new Error(String(e)),
    );
    if (raw instanceof Error) return failed(`cannot reach the coordinator's data port: ${raw.message}`, false);
    if (stale()) return raw.terminate();
    let verified = false;
    try {
      startStream(this.ctx, raw, f.token, {
        onVerified: (inner) => {
          verified = true;
          up(inner, "relay");
        },
        onRejected: failed,
        onClose: () => verified || failed("it closed before the host's end answered", false),
      });
    } catch (err) {
      failed(errorMessage(err));
    }
  }

  /** A verified channel connection: it becomes the session's channel, and the streams waiting go on it. */
  private up(id: string, inner: Socket<End>, path: Path): void {
    const live: Live = { id, tag: `c${++this.channels}`, inner, path, next: 1, mux: undefined! };
    live.mux = channelOver(inner, "host", {
      role: "opener",
      onStreamClose: () => {
        if (this.retired.has(live) && live.mux.streamCount === 0) live.mux.close();
      },
      onClose: (err) => this.lost(live, err),
    });
    if (this.current) this.retire(this.current);
    this.current = live;
    this.reasks = 0;
    this.ctx.onPath?.(path);
    this.serveWaiting();
    const again = this.renewOnUp;
    this.renewOnUp = undefined;
    if (again) this.renew(again);
  }

  private retire(live: Live): void {
    if (this.current === live) this.current = undefined;
    if (live.mux.closed) return;
    if (live.mux.streamCount === 0) return live.mux.close();
    this.retired.add(live);
  }

  /** A channel ended (network, the host's agent gone, the coordinator cut it): a new one if the session goes on. */
  private lost(live: Live, err?: Error): void {
    this.retired.delete(live);
    this.opens.forget(live.id);
    this.settled?.();
    if (this.current !== live) return;
    this.current = undefined;
    if (err) log.debug(`data channel lost: ${err.message}`);
    if (this.ctx.live()) this.ensure();
  }

  private serveWaiting(): void {
    let live: Live | undefined;
    while (this.waiting.length && (live = this.usable())) {
      this.openOn(live, this.waiting.shift()!);
    }
  }

  private failWaiting(err: Error): void {
    for (const w of this.waiting.splice(0)) w.fail(err);
  }
}
