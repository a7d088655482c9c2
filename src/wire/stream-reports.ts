// Reports on direct streams go to the coordinator batched, a frame a session every few milliseconds:
// a burst of streams opening and closing at once must not look like a flood of frames (channel.ts).
import { MAX_STREAM_REPORTS, type ClientFrame, type StreamReport } from "./protocol.ts";

/** How long reports wait to be sent together. */
const BATCH_MS = 20;

export class StreamReports {
  private readonly pending = new Map<string, StreamReport[]>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly send: (f: ClientFrame) => void) {}

  add(sessionId: string, r: StreamReport): void {
    let list = this.pending.get(sessionId);
    if (!list) this.pending.set(sessionId, (list = []));
    list.push(r);
    this.timer ??= setTimeout(() => this.flush(), BATCH_MS);
  }

  /** Sends everything waiting, in order, at most MAX_STREAM_REPORTS a frame. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const [sessionId, list] of this.pending) {
      for (let i = 0; i < list.length; i += MAX_STREAM_REPORTS) this.send({ t: "direct-stream", sessionId, reports: list.slice(i, i + MAX_STREAM_REPORTS) });
    }
    this.pending.clear();
  }
}
