// How the guest tells the coordinator about new streams: in `open` frames paced by a token bucket. A lone
// connection, or a steady stream of them, is told at once (the streams opened in the same turn share a
// frame); a burst (a client's pool of connections, accepted over many event-loop turns) spends the bucket
// and is then gathered, a frame each REFILL_MS, so the coordinator's guard (frames in flight) never sees
// a flood, and a full frame goes at once.
import { MAX_OPENS_IN_FRAME } from "../wire/protocol.ts";

/** Frames sent at once before the pacing starts, and how often one more may go. */
const BURST = 16;
const REFILL_MS = 1;

export class OpenPacer {
  /** Streams waiting to be told, by channel (its frames name it). */
  private readonly unsent = new Map<string, number[]>();
  private tokens = BURST;
  private refilled = 0;

  /** `send(channel, ids)`: one `open` frame naming these streams of that channel. */
  constructor(private readonly send: (channel: string, ids: number[]) => void) {}

  add(channel: string, id: number): void {
    let ids = this.unsent.get(channel);
    if (!ids) this.unsent.set(channel, (ids = []));
    ids.push(id);
    if (ids.length >= MAX_OPENS_IN_FRAME) return this.flush(channel);
    if (ids.length > 1) return;
    const now = performance.now();
    this.tokens = Math.min(BURST, this.tokens + (now - this.refilled) / REFILL_MS);
    this.refilled = now;
    // In debt below one token: the frame waits until the bucket has paid it back.
    const wait = this.tokens >= 1 ? 0 : (1 - this.tokens) * REFILL_MS;
    this.tokens--;
    if (wait === 0) queueMicrotask(() => this.flush(channel));
    else setTimeout(() => this.flush(channel), wait);
  }

  /** The channel is gone: what it had waiting is not told. */
  forget(channel: string): void {
    this.unsent.delete(channel);
  }

  private flush(channel: string): void {
    const ids = this.unsent.get(channel);
    if (!ids?.length) return;
    const batch = ids.splice(0, MAX_OPENS_IN_FRAME);
    if (!ids.length) this.unsent.delete(channel);
    this.send(channel, batch);
  }
}
