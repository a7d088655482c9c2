// Text a peer chose (a guest's name and reason) made safe to show: control, bidi and other invisible
// characters escaped visibly, the length capped, and on a screen delimited so its ends are plain.

/**
 * What a terminal or a viewer would act on instead of showing: C0/C1 controls and DEL (Cc), format
 * characters such as bidi overrides and isolates, zero-width ones and tags (Cf), line and paragraph
 * separators (Zl, Zp), and lone surrogates (Cs).
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;
const SHORT: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
/** A name shown bare (no quotes) only when nothing in it could be mistaken for the text around it. */
const BARE = /^[A-Za-z0-9._@+-]+$/;

/** Limits for display: above the wire's own caps (name 64, reason 500), so only escaping can push text past them. */
export const SHOW_NAME_MAX = 100;
export const SHOW_REASON_MAX = 600;

function escapeChar(ch: string): string {
  const short = SHORT[ch];
  if (short) return short;
  const cp = ch.codePointAt(0)!;
  return cp <= 0xffff ? `\\u${cp.toString(16).padStart(4, "0")}` : `\\u{${cp.toString(16)}}`;
}

/** Every unsafe character as a visible escape (\n, \u202e, \u{e0041}); idempotent, and nothing else changes. */
export function escapeUnsafe(s: string): string {
  return s.replace(UNSAFE, escapeChar);
}

/**
 * `s` for a screen: in double quotes with `\` and `"` escaped too (so its end cannot be faked), unsafe
 * characters escaped, and cut at `max` characters (whole escapes only) with the cut said outside the quotes.
 */
export function quoteText(s: string, max = SHOW_REASON_MAX): string {
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

/**
 * JSON (indented) with every unsafe character as a \\uXXXX escape: the same value to a parser, and nothing a
 * terminal would act on when printed.
 */
export function safeJson(value: unknown): string {
  // JSON.stringify escapes C0 controls inside strings itself, so a raw newline is its own indentation.
  // Per UTF-16 unit: a tag character (outside the BMP) becomes its surrogate pair's two escapes.
  return JSON.stringify(value, null, 2).replace(UNSAFE, (ch) =>
    ch === "\n"
      ? ch
      : ch
          .split("")
          .map((u) => `\\u${u.charCodeAt(0).toString(16).padStart(4, "0")}`)
          .join(""),
  );
}

/** A name as the host sees it: bare when it is a plain token (alice, ci-bot), else quoted as quoteText. */
export function showName(s: string, max = SHOW_NAME_MAX): string {
  return BARE.test(s) && s.length <= max ? s : quoteText(s, max);
}
