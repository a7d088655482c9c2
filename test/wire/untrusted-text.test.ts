// Issue 12 item 7: a guest's own words shown safely: escaped, capped, and delimited on screen.
import { describe, expect, test } from "bun:test";
import { escapeUnsafe, quoteText, showName } from "../../src/wire/untrusted-text.ts";

/** Any character a terminal would act on instead of show. */
const RAW_UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

describe("escapeUnsafe", () => {
  test("controls, bidi overrides and isolates, zero-width and separators become visible escapes", () => {
    const cases: [string, string][] = [
      ["line\nfake line", "line\\nfake line"],
      ["a\r\tb", "a\\r\\tb"],
      ["\x1b[2J\x07", "\\u001b[2J\\u0007"],
      ["\x7f\x85\x9b", "\\u007f\\u0085\\u009b"],
      ["abc\u202edcba", "abc\\u202edcba"],
      ["\u2066x\u2069\u200e\u200f\u061c", "\\u2066x\\u2069\\u200e\\u200f\\u061c"],
      ["zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"],
      ["sep\u2028par\u2029", "sep\\u2028par\\u2029"],
      ["tag\u{e0041}", "tag\\u{e0041}"],
      ["lone\ud800", "lone\\ud800"],
    ];
    for (const [raw, shown] of cases) {
      expect(escapeUnsafe(raw)).toBe(shown);
      expect(RAW_UNSAFE.test(escapeUnsafe(raw))).toBe(false);
    }
  });

  test("ordinary text, accents, other scripts and emoji pass unchanged, and escaping twice changes nothing", () => {
    for (const s of ["debug the checkout query", "José Müller", "数据库迁移", "ok 👍", 'C:\\path "quoted"'])
      expect(escapeUnsafe(s)).toBe(s);
    const once = escapeUnsafe("a\u202eb\nc");
    expect(escapeUnsafe(once)).toBe(once);
  });
});

describe("quoteText", () => {
  test("quotes, and escapes backslash and quote so the end cannot be faked", () => {
    expect(quoteText("hello")).toBe('"hello"');
    expect(quoteText('x" from 10.0.0.1')).toBe('"x\\" from 10.0.0.1"');
    expect(quoteText("tail\\")).toBe('"tail\\\\"');
    // A literal backslash-u typed by the guest reads differently from an escaped control character.
    expect(quoteText("\\u202e")).not.toBe(quoteText("\u202e"));
  });

  test("a reason drawing a fake prompt line stays on one line, inside its quotes", () => {
    const shown = quoteText("need it\n  note    pre-approved by security team; answer y\n\u202eright-to-left");
    expect(shown).toBe('"need it\\n  note    pre-approved by security team; answer y\\n\\u202eright-to-left"');
    expect(shown.includes("\n")).toBe(false);
  });

  test("the cap counts escapes, never splits one or a surrogate pair, and says the cut outside the quotes", () => {
    const shown = quoteText("ab\u202ecd", 7);
    expect(shown).toBe('"ab"… (cut: 3 more characters)');
    expect(quoteText("👍👍👍", 4)).toBe('"👍👍"… (cut: 1 more character)');
    expect(quoteText("x".repeat(600)).length).toBe(602);
    expect(quoteText("\u202e".repeat(500)).length).toBeLessThan(700);
  });
});

describe("showName", () => {
  test("a plain token is shown bare; anything else quoted", () => {
    expect(showName("alice")).toBe("alice");
    expect(showName("ci-bot.2@example.com")).toBe("ci-bot.2@example.com");
    expect(showName("alice smith")).toBe('"alice smith"');
    expect(showName("bob\u202ecilA")).toBe('"bob\\u202ecilA"');
  });
});
