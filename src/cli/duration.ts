// "30m", "90s", "2h", "500ms" or bare seconds, for timeout flags.
import { ConfigError } from "../errors.ts";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * UNITS[m[2] ?? "s"]! : NaN;
  if (!(ms > 0)) throw new ConfigError(`--${flag} must be a duration like 30m, 90s or 2h (got "${text}")`);
  return ms;
}
