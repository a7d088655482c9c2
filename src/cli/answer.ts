// What the host may type at the prompt: y, n, and scoped answers (y 15m, y 1, ro, n REASON), parsed
// before anything is sent so a typo is asked again, never taken for a yes.
import type { Scope } from "../wire/scope.ts";

export type Answer =
  | { allow: true; scope?: Scope }
  | { allow: false; reason?: string }
  | { help: true }
  | { problem: string };

export const ANSWER_HELP = [
  "  y          allow (until either side ends it, or it idles out)",
  "  y 15m      allow for 15 minutes, busy or not (s, m, h)",
  "  y 1        allow one connection; the session ends when it closes",
  "  ro         a shell, read-only for this guest (also: y 15m ro)",
  "  n REASON   deny, and tell the guest why (n alone, or Enter: deny)",
].join("\n");

const UNIT: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000 };

/** The longest time scope: a week. */
const MAX_TTL_MS = 7 * 86_400_000;

/**
 * shell: the guest asks for a shell. unwatched: a plain `share --shell` (no --watch): then `ro` is refused,
 * since a read-only guest only watches and nobody would be at the shell to type; the host is told the fix.
 * (Turning watching on for that one session instead would take over the terminal that answers the other
 * requests, without the host having asked for it.)
 */
export function parseAnswer(line: string, shell: boolean, o: { unwatched?: boolean } = {}): Answer {
  const text = line.trim();
  if (text === "?" || /^h(elp)?$/i.test(text)) return { help: true };
  const no = /^(?:n|no)(?:\s+([\s\S]*))?$/i.exec(text);
  if (text === "" || no) {
    // The reason reaches the guest's terminal: one plain line, capped as the frame allows.
    const reason = no?.[1]
      ?.replace(/[\x00-\x1f\x7f]/g, " ")
      .trim()
      .slice(0, 200);
    return reason ? { allow: false, reason } : { allow: false };
  }
  const words = text.split(/\s+/);
  if (/^ro$/i.test(words[0]!)) words.unshift("y");
  if (!/^y(es)?$/i.test(words[0]!)) return { problem: "please answer y or n (? lists the scoped answers)" };
  const scope: Scope = {};
  for (const w of words.slice(1)) {
    const time = /^(\d{1,9})(s|m|h)$/i.exec(w);
    if (/^ro$/i.test(w)) {
      if (!shell) return { problem: "ro is for shell shares: this guest asks for a port" };
      if (o.unwatched)
        return {
          problem:
            "ro needs someone at the shell: this share has no --watch, so nobody could type. Answer y, or stop and run `tessera share --shell --watch`",
        };
      scope.readOnly = true;
    } else if (/^\d+$/.test(w)) {
      if (scope.streams !== undefined) return { problem: `give one number of connections, not two ("${w}")` };
      const n = Number(w);
      if (n < 1 || n > 4096) return { problem: `"${w}" connections: give 1 to 4096` };
      scope.streams = n;
    } else if (time) {
      if (scope.ttlMs !== undefined) return { problem: `give one time, not two ("${w}")` };
      const ms = Number(time[1]) * UNIT[time[2]!.toLowerCase()]!;
      if (ms < 1000) return { problem: `"${w}" is too short: at least 1s` };
      if (ms > MAX_TTL_MS) return { problem: `"${w}" is too long: at most 168h (7 days); answer y for no time limit` };
      scope.ttlMs = ms;
    } else return { problem: `"${w}" is not a scope: give a time (30s, 15m, 2h), a number of connections (1), or ro` };
  }
  return Object.keys(scope).length ? { allow: true, scope } : { allow: true };
}
