// The guest's pool: a few streams of the session opened, paired and through their end-to-end TLS
// before any local connection needs them, so a new connection starts moving bytes at once instead of
// paying the control round trip, two data dials and a TLS handshake. Pooled streams are not audited
// or served until used: the coordinator logs the opening at "use", and the agent reaches the target
// only then (see coordinator/sessions.ts use, host/stream-server.ts).
import type { Socket } from "bun";
import { connectData } from "../data/data-dial.ts";
import { cut, type End } from "../data/pipe.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";
import { startStream, type StreamContext } from "./stream-context.ts";

/** Ready streams a port forward keeps by default (`join --pool`). */
export const DEFAULT_POOL = 8;
/** The most a guest may ask for: each pooled stream holds two connections at the coordinator. */
export const MAX_POOL = 64;
/**
 * After a pooled stream fails to come up or is refused (the host's agent away, the coordinator busy), the
 * pool asks again this long after, doubling up to MAX_RETRY_MS while it keeps failing.
 */
const RETRY_MS = 1000;
const MAX_RETRY_MS = 16_000;
/** How long after a spare is taken its replacement is asked for (see take). */
const REFILL_DELAY_MS = 5;
/**
 * Spares asked for and not yet answered, at most: the coordinator cuts a control connection with more than
 * 64 frames in flight (its flood guard), so a big pool fills a few at a time, never in one burst.
 */
export const MAX_ASKING = 16;

export interface Pooled {
  streamId: string;
  inner: Socket<End>;
  path: "direct" | "relay";
}

export class StreamPool {
  private readonly ready: Pooled[] = [];
  /**
   * Asked and not yet answered, by ref. Unlike a waiting connection's stream, a spare's data connection
   * is dialled only once the coordinator agreed: a refused spare then never holds a connection slot.
   */
  private readonly asked = new Map<string, number>();
  /** Streams answered whose TLS is still running. */
  private handshaking = 0;
  private quietUntil = 0;
  private retryMs = RETRY_MS;
  private refill: ReturnType<typeof setTimeout> | undefined;
  private refillAt = 0;
  /** The path the session's new streams take, as the guest last heard. */
  private path: Pooled["path"] = "relay";
  /** Counts the times the guest heard "direct": spares asked for before the last one are of the old path. */
  private directSince = 0;
  /** Bumped by drop(): handshakes of an earlier generation no longer count here. */
  private generation = 0;
  /** Spares kept: `size`, halved each time the coordinator cut the connection for flooding it (see flooded). */
  private target: number;

  constructor(
    private readonly ctx: StreamContext,
    size: number,
  ) {
    this.target = size;
  }

  /** How many spares the pool keeps now. */
  get keeps(): number {
    return this.target;
  }

  /**
   * The coordinator cut the connection for too many frames in flight: keep half as many spares (at least
   * one), and wait before filling again, so a resumed session is not cut again in a loop.
   */
  flooded(): void {
    this.target = Math.max(1, Math.floor(this.target / 2));
    this.quietUntil = 0;
    this.backOff();
  }

  owns(ref: string | undefined): boolean {
    return ref !== undefined && this.asked.has(ref);
  }

  /**
   * A ready stream, or undefined (the caller opens one the usual way). Its replacement is asked for a
   * moment later: a handshake now would take the CPU from the connection that just started.
   */
  take(): Pooled | undefined {
    let got: Pooled | undefined;
    while (!got && this.ready.length) {
      const p = this.ready.shift()!;
      if (p.inner.data.closed) continue;
      p.inner.data.onReadEnd = undefined;
      got = p;
    }
    this.fillIn(REFILL_DELAY_MS);
    return got;
  }

  /** One timer, at the soonest fill asked for (a fill while quiet reschedules itself for the end of it). */
  private fillIn(ms: number): void {
    const at = Date.now() + ms;
    if (this.refill && this.refillAt <= at) return;
    clearTimeout(this.refill);
    this.refillAt = at;
    this.refill = setTimeout(() => {
      this.refill = undefined;
      this.fill();
    }, ms);
    this.refill.unref?.();
  }

  /** Asks for streams until `size` are ready or on their way. */
  fill(): void {
    const live = this.ctx.live();
    // A yes counted in streams (`y 1`) is not spent on spares.
    if (!live || live.approved.scope?.streams !== undefined) return;
    const quiet = this.quietUntil - Date.now();
    if (quiet > 0) return this.fillIn(quiet);
    while (this.ready.length + this.asked.size + this.handshaking < this.target && this.asked.size < MAX_ASKING) {
      const ref = this.ctx.nextRef("p");
      this.asked.set(ref, this.directSince);
      this.ctx.send({ t: "open", sessionId: live.approved.sessionId, ref, pool: true });
    }
  }

  /** The coordinator refused a pooled open (a limit, the host away): wait before asking again. */
  refused(f: FrameOf<ServerFrame, "error">): void {
    this.asked.delete(f.ref!);
    this.backOff();
  }

  /** Once a round: the refusals of one fill's asks come together and count as one failure. */
  private backOff(): void {
    if (Date.now() < this.quietUntil) return;
    this.quietUntil = Date.now() + this.retryMs;
    this.fillIn(this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
  }

  async answered(f: FrameOf<ServerFrame, "stream">): Promise<void> {
    const askedAt = this.asked.get(f.ref);
    if (askedAt === undefined) return;
    this.asked.delete(f.ref);
    // Room to ask for the next one (a pool bigger than MAX_ASKING fills as answers come).
    this.fillIn(REFILL_DELAY_MS);
    // Counted from now, so a fill meanwhile does not ask for its replacement.
    this.handshaking++;
    const generation = this.generation;
    let settled = false;
    const settle = (): boolean => {
      if (settled || generation !== this.generation) return false;
      settled = true;
      this.handshaking--;
      return true;
    };
    const failed = (): void => {
      if (settle()) this.backOff();
    };
    const keep = (inner: Socket<End>, path: Pooled["path"]): void => {
      if (!settle() || !this.ctx.live()) return cut(inner);
      // Asked for before the session went direct: a direct spare takes its place. (One asked for since
      // came through the relay because the coordinator routes it so, as after the host's agent restarted: kept.)
      if (path === "relay" && this.path === "direct" && askedAt < this.directSince) {
        cut(inner);
        return this.fill();
      }
      const spare = { streamId: f.streamId, inner, path };
      this.ready.push(spare);
      // The host's side never half-closes a spare: a FIN means it is gone (its agent killed, say), and a
      // spare left half-open would be handed to the next connection and fail it.
      inner.data.onReadEnd = (sock) => cut(sock);
      this.retryMs = RETRY_MS;
      const closed = inner.data.onClose;
      inner.data.onClose = (sock, clean) => {
        const i = this.ready.indexOf(spare);
        // Died unused (the host's agent went away, say): replaced, as a taken one is.
        if (i >= 0) {
          this.ready.splice(i, 1);
          this.fillIn(REFILL_DELAY_MS);
        }
        closed?.(sock, clean);
      };
    };
    // On the direct path the agent dials us (or we the host); a failed dial takes the relay unseen.
    const direct = f.direct ? this.ctx.direct?.() : undefined;
    if (direct) {
      return direct.expect(f, {
        take: (inner) => keep(inner, "direct"),
        gone: () => generation !== this.generation || !this.ctx.live(),
        fallback: () => void this.viaRelay(f, generation, keep, failed),
        fail: failed,
      });
    }
    await this.viaRelay(f, generation, keep, failed);
  }

  /** The spare's data connection through the coordinator, and its end-to-end TLS. */
  private async viaRelay(
    f: FrameOf<ServerFrame, "stream">,
    generation: number,
    keep: (inner: Socket<End>, path: Pooled["path"]) => void,
    failed: () => void,
  ): Promise<void> {
    const raw = await connectData(this.ctx.dataAddress()).catch((e: unknown) =>
      e instanceof Error ? e : new Error(String(e)),
    );
    if (raw instanceof Error || !this.ctx.live() || generation !== this.generation) {
      if (!(raw instanceof Error)) raw.terminate();
      return failed();
    }
    try {
      startStream(this.ctx, raw, f.token, {
        onVerified: (inner) => keep(inner, "relay"),
        onRejected: (why) => {
          failed();
          this.ctx.onStreamError?.(`a pooled stream failed: ${why}`);
        },
        onClose: failed,
      });
    } catch {
      failed();
    }
  }

  /**
   * The session's new streams take path `p`; on "direct" the spares through the coordinator give way.
   * `told`: the coordinator said so (the agent proved or kept the path, went away or came back). Spares
   * asked for under the old routing are no longer counted: a direct one whose agent is gone would hold
   * its place for the direct listener's 30 s.
   */
  pathIs(p: Pooled["path"], told = false): void {
    if (told) {
      this.generation++;
      this.handshaking = 0;
    }
    this.path = p;
    if (p === "direct") {
      this.directSince++;
      for (const spare of this.ready.filter((x) => x.path === "relay")) cut(spare.inner);
    }
    // Said by the coordinator when the host's agent proved (or kept) the path: whatever failed before, ask now.
    this.quietUntil = 0;
    this.retryMs = RETRY_MS;
    this.fill();
  }

  /** The session ended or the guest is resuming: every pooled stream goes. */
  drop(): void {
    clearTimeout(this.refill);
    this.refill = undefined;
    for (const p of this.ready.splice(0)) cut(p.inner);
    this.asked.clear();
    this.generation++;
    this.handshaking = 0;
    // A flood cut's back-off outlives the resume it leads to (see flooded); any other drop starts afresh.
    if (Date.now() >= this.quietUntil) {
      this.quietUntil = 0;
      this.retryMs = RETRY_MS;
    }
  }
}
