// Text a peer chose (a guest's name, a host's name, an audit field) made safe to show in the console:
// the browser's copy of src/wire/untrusted-text.ts (the host's prompt), held equal to it by a property
// test (test/console-show.test.ts). Callers put the result in textContent, never in HTML.

/** C0/C1 controls and DEL, format characters (bidi, zero-width, tags), line/paragraph separators, lone surrogates. */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;
const SHORT = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
const BARE = /^[A-Za-z0-9._@+-]+$/;
export const SHOW_NAME_MAX = 100;
export const SHOW_REASON_MAX = 600;

function escapeChar(ch) {
  const short = SHORT[ch];
  if (short) return short;
  const cp = ch.codePointAt(0);
  return cp <= 0xffff ? `\\u${cp.toString(16).padStart(4, "0")}` : `\\u{${cp.toString(16)}}`;
}

/** Every unsafe character as a visible escape (\n, \u202e, \u{e0041}); nothing else changes. */
export function escapeUnsafe(s) {
  return s.replace(UNSAFE, escapeChar);
}

/** In double quotes with `\` and `"` escaped, unsafe characters escaped, cut at `max` with the cut said. */
export function quoteText(s, max = SHOW_REASON_MAX) {
  let out = "";
  let shown = 0;
  for (const ch of s) {
    const piece = ch === "\\" || ch === '"' ? `\\${ch}` : escapeUnsafe(ch);
    if (out.length + piece.length > max) break;
    out += piece;
    shown += ch.length;
  }
  if (shown === s.length) return `"${out}"`;
  const more = [...s.slice(shown)].length;
  return `"${out}"… (cut: ${more} more character${more === 1 ? "" : "s"})`;
}

/** A name as the host's prompt shows it: bare when it is a plain token, else quoted and escaped. */
export function showName(s, max = SHOW_NAME_MAX) {
  return BARE.test(s) && s.length <= max ? s : quoteText(s, max);
}
