// Refusals that cost the asker nothing (rate-limited attempts, bad or unknown codes, bad enrolment
// tokens) are counted in memory and audited as one line per address per window: a flood of them
// costs no fsync each and never waits in front of legitimate work, and none is left out of the log.
import type { AuditLog } from "../audit/log.ts";
import { errorMessage } from "../errors.ts";

interface Tally {
  attempts: number;
  first: number;
  last: number;
  /** "redeem.rate_limited" -> count: what was tried and why it was refused. */
  reasons: Map<string, number>;
  /** Shares whose codes were tried (a used or expired code still names its share), a few at most. */
  shareIds: Set<string>;
}

const MAX_SHARE_IDS = 8;
/** Where attempts from addresses past the per-window cap are counted, so none goes unrecorded. */
export const OTHER_ADDRESSES = "(other addresses)";

export class RefusalTally {
  private byAddr = new Map<string, Tally>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly audit: AuditLog,
    private readonly windowMs: number,
    private readonly maxAddrs: number,
    private readonly warn: (message: string) => void,
  ) {}

  /** Counts one refused attempt from `addr` (an IP); the window's line is written when the window ends. */
  note(addr: string, reason: string, shareId?: string, now = Date.now()): void {
    const key = this.byAddr.has(addr) || this.byAddr.size < this.maxAddrs ? addr : OTHER_ADDRESSES;
    let t = this.byAddr.get(key);
    if (!t) this.byAddr.set(key, (t = { attempts: 0, first: now, last: now, reasons: new Map(), shareIds: new Set() }));
    t.attempts++;
    t.last = now;
    t.reasons.set(reason, (t.reasons.get(reason) ?? 0) + 1);
    if (shareId && t.shareIds.size < MAX_SHARE_IDS) t.shareIds.add(shareId);
    this.arm();
  }

  private arm(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      try {
        this.flush().catch((e) => this.warn(`audit: refusal lines not synced: ${errorMessage(e)}`));
      } catch (e) {
        this.warn(`audit: refusal lines not written, kept for the next window: ${errorMessage(e)}`);
        this.arm();
      }
    }, this.windowMs);
    this.timer.unref?.();
  }

  get addresses(): number {
    return this.byAddr.size;
  }

  /**
   * Writes one "refused" line per address counted so far (appendSoon: written now, synced with the next
   * sync anyone asks for) and resolves once they are durable. Lines it could not write stay counted
   * and it throws, so a shutdown hears of it.
   */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const entries = [...this.byAddr];
    this.byAddr = new Map();
    let durable: Promise<void> = Promise.resolve();
    for (let i = 0; i < entries.length; i++) {
      const [addr, t] = entries[i]!;
      try {
        durable = this.audit.appendSoon("refused", {
          addr,
          attempts: t.attempts,
          reasons: [...t.reasons]
            .sort((a, b) => b[1] - a[1])
            .map(([r, n]) => `${r}=${n}`)
            .join(" "),
          shareIds: t.shareIds.size ? [...t.shareIds].join(",") : undefined,
          first: new Date(t.first).toISOString(),
          last: new Date(t.last).toISOString(),
        });
      } catch (e) {
        for (const [a, rest] of entries.slice(i)) this.byAddr.set(a, rest);
        throw e;
      }
    }
    return durable;
  }
}
