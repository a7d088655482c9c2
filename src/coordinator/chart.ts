// The console's last-hour chart: the /metrics counters sampled in memory every few seconds (an hour
// of samples at most), answered as rates between samples; the page draws them as inline SVG.
import { metrics } from "./metrics.ts";

export const SAMPLE_EVERY_MS = 10_000;
const HOUR_MS = 3_600_000;
const MAX_SAMPLES = HOUR_MS / SAMPLE_EVERY_MS + 1;

interface Sample {
  t: number;
  sessions: number;
  streams: number;
  relayed: number;
  direct: number;
  refusals: number;
}

export interface ChartPoint {
  /** The end of the interval, ISO time. */
  t: string;
  sessions: number;
  streamsPerSec: number;
  relayedBytesPerSec: number;
  directBytesPerSec: number;
  refusalsPerSec: number;
}

export class ChartSampler {
  private readonly samples: Sample[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;

  /** `sessions`: the live gauge, read from the broker as /metrics reads it. */
  constructor(
    private readonly sessions: () => number,
    private readonly everyMs = SAMPLE_EVERY_MS,
  ) {}

  start(): void {
    this.take(Date.now());
    this.timer = setInterval(() => this.take(Date.now()), this.everyMs);
    this.timer.unref?.();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The last hour as rates between samples, with one more point for "now" (since the last sample). */
  points(now = Date.now()): { everySec: number; points: ChartPoint[] } {
    const all = [...this.samples, this.read(now)];
    const out: ChartPoint[] = [];
    for (let i = 1; i < all.length; i++) {
      const [a, b] = [all[i - 1]!, all[i]!];
      const sec = Math.max(0.001, (b.t - a.t) / 1000);
      const rate = (k: "streams" | "relayed" | "direct" | "refusals") => Math.max(0, (b[k] - a[k]) / sec);
      out.push({
        t: new Date(b.t).toISOString(),
        sessions: b.sessions,
        streamsPerSec: rate("streams"),
        relayedBytesPerSec: rate("relayed"),
        directBytesPerSec: rate("direct"),
        refusalsPerSec: rate("refusals"),
      });
    }
    return { everySec: this.everyMs / 1000, points: out };
  }

  private take(now: number): void {
    this.samples.push(this.read(now));
    if (this.samples.length > MAX_SAMPLES) this.samples.shift();
  }

  private read(t: number): Sample {
    return {
      t,
      sessions: this.sessions(),
      streams: metrics.streamsTotal.total(),
      relayed: metrics.bytesRelayed.total(),
      direct: metrics.bytesDirect.total(),
      // Every refusal the coordinator counts: codes, enrolments, connections on arrival, operator tokens.
      refusals:
        metrics.redeemFailures.total() +
        metrics.enrolFailures.total() +
        metrics.connectionsRefused.total() +
        metrics.operatorRefusals.total(),
    };
  }
}
