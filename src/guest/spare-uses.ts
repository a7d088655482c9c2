// Local connections put on a ready spare (see stream-pool.ts), by the ref of their "use". Until the host's
// side answers, what the client sends is kept: the coordinator may retire a spare (its node or one its
// bytes pass through is stopping, its session moving) just as the guest takes it, and then turns the use
// down. Nothing of a refused use reached the target, so the connection goes whole on a new stream; a use
// never refused was served, and its bytes are never sent twice.
import type { Socket } from "bun";
import { endWrite, pair, type End } from "../data/pipe.ts";
import type { StreamContext } from "./stream-context.ts";

/**
 * A spare put to work that ended before the host's side said a word waits this long for the coordinator's
 * verdict on its "use" (one control round trip, through node mail at worst): a refusal sends the bytes
 * again on a new stream; none means the stream was served and its target closed without a word.
 */
export const USE_VERDICT_MS = 3_000;

interface Held {
  local: Socket<End>;
  streamId: string;
  timer: ReturnType<typeof setTimeout>;
}

export class SpareUses {
  private readonly using = new Map<string, Socket<End>>();
  /** Of those, the ones whose spare ended unanswered, waiting for the verdict on their use. */
  private readonly held = new Map<string, Held>();

  constructor(private readonly ctx: StreamContext) {}

  owns(ref: string | undefined): boolean {
    return ref !== undefined && this.using.has(ref);
  }

  /** The spare `inner` takes `local`: "use" goes to the coordinator and bytes go into the stream at once. */
  use(local: Socket<End>, streamId: string, inner: Socket<End>): void {
    const live = this.ctx.live()!;
    const ref = this.ctx.nextRef("u");
    this.using.set(ref, local);
    this.ctx.socks.add(local);
    local.data.onClose = (s) => {
      this.ctx.socks.delete(s);
      this.forget(ref);
    };
    local.data.replay = { chunks: [...local.data.early], bytes: local.data.earlyBytes };
    local.data.onPeerLost = (l) => this.hold(ref, streamId, l);
    local.data.onPeerEnded = (l) => this.hold(ref, streamId, l);
    this.ctx.send({ t: "use", sessionId: live.approved.sessionId, streamId, ref });
    pair(local, inner);
  }

  /**
   * The coordinator refused the use `ref`. Returns the local connection when nothing of it reached the
   * target (no answer yet): its bytes are back in `early`, for the caller to carry on a new stream.
   * Otherwise the connection ends here and undefined comes back.
   */
  refused(ref: string): Socket<End> | undefined {
    const local = this.using.get(ref);
    if (!local) return undefined;
    const unanswered = this.held.has(ref) || local.data.replay !== undefined;
    this.forget(ref);
    if (!unanswered) {
      local.terminate();
      return undefined;
    }
    const inner = local.data.peer;
    if (inner) {
      local.data.peer = undefined;
      inner.data.peer = undefined;
      inner.terminate();
    }
    takeBack(local);
    return local;
  }

  /** The host's side refused the stream: it was served (and turned down there), so a held connection ends now. */
  streamRefused(streamId: string): void {
    for (const [ref, h] of this.held)
      if (h.streamId === streamId) {
        this.forget(ref);
        h.local.end();
      }
  }

  drop(): void {
    for (const h of this.held.values()) {
      clearTimeout(h.timer);
      h.local.terminate();
    }
    this.held.clear();
    this.using.clear();
  }

  /**
   * The spare under `local` ended (closed, or half-closed: still paired then, the client's bytes still
   * going to it and kept) before the host's side said a word: wait for the verdict on its use.
   */
  private hold(ref: string, streamId: string, local: Socket<End>): void {
    const before = this.held.get(ref);
    if (before) clearTimeout(before.timer);
    // Unpaired (closed): its bytes go back in line for a new stream should the use be refused.
    if (!local.data.peer) takeBack(local);
    const timer = setTimeout(() => {
      // No refusal: the stream was served and its target stopped without a word; so does the client's side.
      this.forget(ref);
      const paired = local.data.peer !== undefined;
      takeBack(local);
      if (paired) endWrite(local);
      else local.end();
    }, USE_VERDICT_MS);
    timer.unref?.();
    this.held.set(ref, { local, streamId, timer });
  }

  private forget(ref: string): void {
    this.using.delete(ref);
    const h = this.held.get(ref);
    if (h) clearTimeout(h.timer);
    this.held.delete(ref);
  }
}

/** What the client sent on the spare goes first on the next stream (pair delivers `early` in order). */
function takeBack(local: Socket<End>): void {
  const r = local.data.replay;
  local.data.replay = undefined;
  local.data.onPeerLost = undefined;
  local.data.onPeerEnded = undefined;
  if (!r || local.data.peer) return;
  local.data.early = [...r.chunks, ...local.data.early];
  local.data.earlyBytes += r.bytes;
}
