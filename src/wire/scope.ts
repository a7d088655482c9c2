// A scoped yes: what the host's answer limits a session to (how long, how many connections, read-only).
// Defined once here, enforced by the coordinator and, independently, by the host's agent, so a scope
// the agent enforces cannot be lifted by the coordinator.
import * as v from "valibot";

export const Scope = v.strictObject({
  /** The session ends this long after approval, busy or not. */
  ttlMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1000), v.maxValue(7 * 86_400_000))),
  /** At most this many connections (streams) in the session; it ends once they have all closed. */
  streams: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(4096))),
  /** A shell share: this guest watches, only the host types. */
  readOnly: v.optional(v.boolean()),
});
export type Scope = v.InferOutput<typeof Scope>;

/** "15 minutes", "one connection", "read-only": how a scope reads on a terminal; "" for none. */
export function describeScope(s: Scope | undefined): string {
  if (!s) return "";
  const parts: string[] = [];
  if (s.ttlMs !== undefined) parts.push(`for ${span(s.ttlMs)}`);
  if (s.streams !== undefined) parts.push(s.streams === 1 ? "one connection" : `${s.streams} connections`);
  if (s.readOnly) parts.push("read-only");
  return parts.join(", ");
}

/** The answer as the host would type it: "y 15m", "y 1", "ro", "y" (for "answered by laptop (y 15m)"). */
export function typedAnswer(s: Scope | undefined): string {
  if (s?.readOnly) return "ro";
  const ttl =
    s?.ttlMs === undefined
      ? []
      : [
          s.ttlMs % 3_600_000 === 0
            ? `${s.ttlMs / 3_600_000}h`
            : s.ttlMs % 60_000 === 0
              ? `${s.ttlMs / 60_000}m`
              : `${Math.round(s.ttlMs / 1000)}s`,
        ];
  return ["y", ...ttl, ...(s?.streams === undefined ? [] : [String(s.streams)])].join(" ");
}

export function span(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${Math.round(ms / 1000)}s`;
}

/**
 * Why a new stream is not allowed under the scope now, or undefined if it is: `opened` streams so far,
 * the session approved at `since`.
 */
export function streamRefusal(s: Scope | undefined, opened: number, since: number, now: number): string | undefined {
  const over = timeOver(s, since, now);
  if (over) return over;
  if (s?.streams !== undefined && opened >= s.streams)
    return `the host allowed ${describeScope({ streams: s.streams })} in this session, and it is used`;
  return undefined;
}

/** Why a session approved at `since` has outlived its time scope, or undefined while it has not. */
export function timeOver(s: Scope | undefined, since: number, now: number): string | undefined {
  return s?.ttlMs !== undefined && now - since >= s.ttlMs
    ? `the host allowed this session ${span(s.ttlMs)}, and that is over`
    : undefined;
}
