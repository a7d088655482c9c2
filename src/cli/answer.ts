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

export function parseAnswer(line: string, shell: boolean): Answer {
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
    const time = /^(\d{1,6})(s|m|h)$/i.exec(w);
    if (/^ro$/i.test(w)) {
      if (!shell) return { problem: "ro is for shell shares: this guest asks for a port" };
      scope.readOnly = true;
    } else if (/^\d{1,4}$/.test(w) && Number(w) >= 1 && Number(w) <= 4096) scope.streams = Number(w);
    else if (
      time &&
      Number(time[1]) * UNIT[time[2]!.toLowerCase()]! >= 1000 &&
      Number(time[1]) * UNIT[time[2]!.toLowerCase()]! <= 7 * 86_400_000
    ) {
      scope.ttlMs = Number(time[1]) * UNIT[time[2]!.toLowerCase()]!;
    } else return { problem: `"${w}" is not a scope: give a time (30s, 15m, 2h), a number of connections (1), or ro` };
  }
  return Object.keys(scope).length ? { allow: true, scope } : { allow: true };
}
