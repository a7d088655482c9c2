// Streams of the session handed over as node Duplexes rather than forwarded from a local port: a
// shell's terminal, stdin/stdout for --stdio. Same end-to-end TLS and host check as every stream.
import type { Duplex } from "node:stream";
import type { Socket } from "bun";
import type { End } from "../data/pipe.ts";
import { TesseraError, errorMessage } from "../errors.ts";
import { connectData } from "../data/data-dial.ts";
import { asDuplex, cleanlyDone } from "../data/socket-duplex.ts";
import { refusal } from "../wire/control-client.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";
import { startStream, type StreamContext } from "./stream-context.ts";

type Waiter = { resolve: (d: Duplex) => void; reject: (e: Error) => void };

export class NodeStreams {
  /** Streams asked for and not yet answered, by ref. */
  private readonly dialing = new Map<string, Waiter>();
  private readonly duplexes = new Set<Duplex>();

  constructor(private readonly ctx: StreamContext) {}

  owns(ref: string | undefined): boolean {
    return ref !== undefined && this.dialing.has(ref);
  }

  /** Asks for one stream; resolves with it once verified. The session must be live (see Guest.openStream). */
  open(sessionId: string): Promise<Duplex> {
    const ref = this.ctx.nextRef("d");
    return new Promise((resolve, reject) => {
      this.dialing.set(ref, { resolve, reject });
      this.ctx.send({ t: "open", sessionId, ref });
    });
  }

  /**
   * Carries exactly one stream between `local` (stdin/stdout, say) and `inner`. Resolves once it is over:
   * true when both directions ended cleanly, false when it was cut.
   */
  static carry(local: Duplex, inner: Duplex): Promise<boolean> {
    return new Promise((resolve) => {
      local.once("close", () => resolve(cleanlyDone(local)));
      local.on("close", () => {
        if (!cleanlyDone(local)) inner.destroy();
      });
      inner.on("close", () => {
        if (!cleanlyDone(inner)) local.destroy();
      });
      inner.on("error", () => local.destroy());
      local.on("error", () => inner.destroy());
      local.pipe(inner);
      inner.pipe(local);
      local.resume();
    });
  }

  refused(f: FrameOf<ServerFrame, "error">): void {
    const d = this.dialing.get(f.ref!);
    if (!d) return;
    this.dialing.delete(f.ref!);
    d.reject(refusal(f));
  }

  async ready(f: FrameOf<ServerFrame, "stream">, fellBack?: Waiter): Promise<void> {
    const d = fellBack ?? this.dialing.get(f.ref);
    if (!d) return;
    this.dialing.delete(f.ref);
    if (!this.ctx.live()) return d.reject(new TesseraError("no_session", "the session is not open"));
    const direct = f.direct ? this.ctx.direct?.() : undefined;
    // The direct path: the host's agent dials us; the relay is the fallback (direct-listener.ts).
    if (direct) {
      return direct.expect(f, {
        take: (inner) => this.handOver(inner, d),
        gone: () => false,
        fallback: () => void this.ready({ ...f, direct: undefined }, d),
        fail: (why) => d.reject(new TesseraError("stream", `stream failed: ${why}`)),
      });
    }
    this.ctx.onPath?.("relay");
    try {
      startStream(this.ctx, await connectData(this.ctx.dataAddress()), f.token, {
        onVerified: (inner) => this.handOver(inner, d),
        onRejected: (why) => d.reject(new TesseraError("stream", `stream failed: ${why}`)),
        // Settles a stream that closed before its handshake did (a no-op once it was handed over).
        onClose: () => d.reject(new TesseraError("stream", "stream failed: it closed before the host's end answered")),
      });
    } catch (err) {
      d.reject(new TesseraError("stream", `cannot reach the coordinator's data port: ${errorMessage(err)}`));
    }
  }

  private handOver(inner: Socket<End>, d: Waiter): void {
    const duplex = asDuplex(inner);
    this.duplexes.add(duplex);
    duplex.on("close", () => this.duplexes.delete(duplex));
    d.resolve(duplex);
  }

  drop(why: Error): void {
    for (const d of this.dialing.values()) d.reject(why);
    this.dialing.clear();
    for (const d of [...this.duplexes]) d.destroy();
  }
}
