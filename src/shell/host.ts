// The host's side of shared shells: one terminal (a ShellSession with its PTY) per approved session,
// found again by session id when the guest's stream comes back after a lost connection.
import type { Duplex } from "node:stream";
import { logger } from "../log.ts";
import { ShellSession, type ShellEvents } from "./session.ts";
import type { ShellOptions, ShellSessionInfo } from "./types.ts";

export { ShellSession };
export type { ShellEvents } from "./session.ts";
export type { ShellOptions, ShellResult, ShellSessionInfo } from "./types.ts";
const log = logger("shell");

export class ShellHost {
  private readonly live = new Map<string, ShellSession>();
  private readonly served = new Set<string>();

  constructor(
    private readonly o: ShellOptions,
    private readonly events: ShellEvents = {},
  ) {}

  /**
   * Takes a verified end-to-end stream of a session (the agent checked it is the approved guest's key).
   * A session gets one terminal: a later stream re-attaches to it, and once it has ended none starts again.
   */
  serve(stream: Duplex, info: ShellSessionInfo): void {
    const live = this.live.get(info.sessionId);
    if (live) return live.attach(stream);
    if (this.served.has(info.sessionId)) {
      log.warn(`session ${info.sessionId}: refused a new terminal; this session's shell has already ended`);
      stream.destroy();
      return;
    }
    this.served.add(info.sessionId);
    const s = new ShellSession(stream, info, info.readOnly ? { ...this.o, readOnly: true } : this.o, {
      onStart: (x) => this.events.onStart?.(x),
      onInputDropped: (x) => this.events.onInputDropped?.(x),
      onEnd: (x, r) => {
        this.live.delete(x.sessionId);
        this.events.onEnd?.(x, r);
      },
    });
    this.live.set(info.sessionId, s);
  }

  /** The coordinator closed the session: its terminal ends now, however its stream is doing. */
  closed(sessionId: string, reason: string): void {
    this.live.get(sessionId)?.end(reason);
  }

  stop(): void {
    for (const s of [...this.live.values()]) s.end("the host stopped sharing");
  }
}
