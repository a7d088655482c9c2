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
/** After a pooled stream fails to come up, the pool waits this long before asking again. */
const RETRY_MS = 1000;
/** How long after a spare is taken its replacement is asked for (see take). */
const REFILL_DELAY_MS = 5;

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
  private readonly asked = new Set<string>();
  /** Streams answered whose TLS is still running. */
  private handshaking = 0;
  private quietUntil = 0;
  private refill: ReturnType<typeof setTimeout> | undefined;
  /** The path the session's new streams take, as the guest last heard. */
  private path: Pooled["path"] = "relay";
  /** Bumped by drop(): handshakes of an earlier generation no longer count here. */
  private generation = 0;

  constructor(private readonly ctx: StreamContext, private readonly size: number) {}

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
      if (!p.inner.data.closed) got = p;
    }
    this.refillSoon();
    return got;
  }

  private refillSoon(): void {
    if (this.refill) return;
    this.refill = setTimeout(() => {
      this.refill = undefined;
      this.fill();
    }, REFILL_DELAY_MS);
    this.refill.unref?.();
  }

  /** Asks for streams until `size` are ready or on their way. */
  fill(): void {
    const live = this.ctx.live();
    // A yes counted in streams (`y 1`) is not spent on spares.
    if (!live || live.approved.scope?.streams !== undefined || Date.now() < this.quietUntil) return;
    while (this.ready.length + this.asked.size + this.handshaking < this.size) {
      const ref = this.ctx.nextRef("p");
      this.asked.add(ref);
      this.ctx.send({ t: "open", sessionId: live.approved.sessionId, ref, pool: true });
    }
  }

  /** The coordinator refused a pooled open (a limit, the host away): wait before asking again. */
  refused(f: FrameOf<ServerFrame, "error">): void {
    this.asked.delete(f.ref!);
    this.quietUntil = Date.now() + RETRY_MS;
  }

  async answered(f: FrameOf<ServerFrame, "stream">): Promise<void> {
    if (!this.asked.delete(f.ref)) return;
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
      if (settle()) this.quietUntil = Date.now() + RETRY_MS;
    };
    const keep = (inner: Socket<End>, path: Pooled["path"]): void => {
      if (!settle() || !this.ctx.live()) return cut(inner);
      // Asked for before the session went direct: a direct spare takes its place.
      if (path === "relay" && this.path === "direct") {
        cut(inner);
        return this.fill();
      }
      const spare = { streamId: f.streamId, inner, path };
      this.ready.push(spare);
      const closed = inner.data.onClose;
      inner.data.onClose = (sock, clean) => {
        const i = this.ready.indexOf(spare);
        if (i >= 0) this.ready.splice(i, 1);
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
  private async viaRelay(f: FrameOf<ServerFrame, "stream">, generation: number, keep: (inner: Socket<End>, path: Pooled["path"]) => void, failed: () => void): Promise<void> {
    const raw = await connectData(this.ctx.dataAddress()).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
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

  /** The session's streams now go direct: spares through the coordinator give way to direct ones. */
  pathIs(p: Pooled["path"]): void {
    this.path = p;
    if (p !== "direct") return;
    for (const spare of this.ready.filter((x) => x.path === "relay")) cut(spare.inner);
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
    this.quietUntil = 0;
  }
}
