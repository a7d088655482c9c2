// Streams of the session handed over as node Duplexes rather than forwarded from a local port: a
// shell's terminal, stdin/stdout for --stdio. Each is a stream of the session's data channel, handed
// over once the host's side has reached its target (a refusal rejects with the coordinator's words).
import type { Duplex } from "node:stream";
import { TesseraError } from "../errors.ts";
import { MuxDuplex } from "../data/mux-duplex.ts";
import { resetName } from "../wire/mux-frames.ts";
import { cleanlyDone } from "../data/socket-duplex.ts";
import type { ChannelLink } from "./channel-link.ts";

export class NodeStreams {
  private readonly duplexes = new Set<Duplex>();

  constructor(private readonly link: ChannelLink) {}

  /** Opens one stream; resolves with it once the host's side answered. The session must be live (see Guest.openStream). */
  open(): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error, d?: Duplex) => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else resolve(d!);
      };
      this.link.open({
        ready: (stream) =>
          stream.attach({
            data: () => {},
            end: () => {},
            drain: () => {},
            ack: () => {
              const duplex = new MuxDuplex(stream);
              this.duplexes.add(duplex);
              duplex.on("close", () => this.duplexes.delete(duplex));
              settle(undefined, duplex);
            },
            close: (reset) =>
              settle(
                new TesseraError(
                  "stream",
                  `stream failed: the host's side ${reset ? `reset it (${resetName(reset.reason)})` : "closed it"} before it answered`,
                ),
              ),
          }),
        fail: (err) => settle(err),
        refused: (err) => settle(err),
      });
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

  drop(): void {
    for (const d of [...this.duplexes]) d.destroy();
  }
}
