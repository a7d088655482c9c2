// "30m", "90s", "2h", "90d", "500ms" or bare seconds, for timeout flags; sizes and counts for the other limits.
import { ConfigError } from "../errors.ts";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * The longest a timer can wait: setTimeout holds a signed 32-bit count of milliseconds, and a longer
 * delay fires after 1 ms instead (so `--idle-timeout 600h` closed every session at once).
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A duration in ms; `max` is MAX_TIMER_MS unless the value is only ever compared with clocks (a token's lifetime). */
export function parseDuration(text: string, flag: string, max = MAX_TIMER_MS): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * UNITS[m[2] ?? "s"]! : NaN;
  if (!(ms > 0)) throw new ConfigError(`--${flag} must be a duration like 30m, 90s or 2h (got "${text}")`);
  if (!(ms <= max)) throw new ConfigError(`--${flag} must be at most ${Math.floor(max / 3_600_000)}h (got "${text}")`);
  return ms;
}

const SIZES: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** "64MiB", "500k", "1g" or bare bytes; "0" means off. */
export function parseSize(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const mult = m ? SIZES[m[2]!.toLowerCase()] : undefined;
  if (!m || mult === undefined)
    throw new ConfigError(`--${flag} must be a size like 64MiB, 500k or 0 for never (got "${text}")`);
  return Math.floor(Number(m[1]) * mult);
}

/** A whole number of at least 1, for cap flags. */
export function parseCount(text: string, flag: string): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(Number.isSafeInteger(n) && n >= 1))
    throw new ConfigError(`--${flag} must be a whole number of at least 1 (got "${text}")`);
  return n;
}
