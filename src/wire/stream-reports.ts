// Reports on direct streams go to the coordinator batched, at most a frame a session every 20 ms: a
// burst of streams opening and closing at once must not look like a flood of frames (channel.ts).
import { MAX_STREAM_REPORTS, type ClientFrame, type StreamReport } from "./protocol.ts";

/** At most one send of reports this often; a report after a quiet spell goes at the end of its tick. */
const BATCH_MS = 20;

export class StreamReports {
  private readonly pending = new Map<string, StreamReport[]>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private due = false;
  private lastFlush = 0;

  constructor(private readonly send: (f: ClientFrame) => void) {}

  add(sessionId: string, r: StreamReport): void {
    let list = this.pending.get(sessionId);
    if (!list) this.pending.set(sessionId, (list = []));
    list.push(r);
    if (this.due) return;
    this.due = true;
    // Not a fixed delay: a stream's close would then reach the coordinator up to 20 ms late, after a
    // session end that followed it (a guest's Ctrl-C), and its close line would carry no bytes.
    const wait = this.lastFlush + BATCH_MS - Date.now();
    if (wait <= 0) queueMicrotask(() => this.flush());
    else this.timer = setTimeout(() => this.flush(), wait);
  }

  /** Sends everything waiting, in order, at most MAX_STREAM_REPORTS a frame. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.due = false;
    this.lastFlush = Date.now();
    for (const [sessionId, list] of this.pending) {
      for (let i = 0; i < list.length; i += MAX_STREAM_REPORTS)
        this.send({ t: "direct-stream", sessionId, reports: list.slice(i, i + MAX_STREAM_REPORTS) });
    }
    this.pending.clear();
  }
}
