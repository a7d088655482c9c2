// The console's escaping (src/console/show.js, run in the browser) is the host prompt's
// (src/wire/untrusted-text.ts): the same output for any string, hostile characters included.
import { expect, test } from "bun:test";
import path from "node:path";
import fc from "fast-check";
import { escapeUnsafe, quoteText, showName } from "../../src/wire/untrusted-text.ts";

type Show = {
  escapeUnsafe: (s: string) => string;
  quoteText: (s: string, max?: number) => string;
  showName: (s: string, max?: number) => string;
};
// Loaded by path: it is a browser module, not part of the TypeScript program.
const browser = (await import(path.join(import.meta.dir, "../../src/console/show.js"))) as Show;

/** Strings rich in what matters: bidi, zero-width, C0/C1, separators, tags, lone surrogates, quotes, backslashes. */
const hostile = fc
  .array(
    fc.oneof(
      fc.constantFrom("\u202e", "\u2066", "\u200b", "\u200d", "\u009b", "\x1b", "\n", "\t", "\u2028", "\u{e0041}"),
      fc.constantFrom("\ud800", "\udc00", '"', "\\", "é", "界", "😀", "a", "-", " "),
      fc.string({ unit: "grapheme" }),
      fc.string({ unit: "binary" }),
    ),
    { maxLength: 40 },
  )
  .map((parts) => parts.join(""));

test("show.js escapes exactly as the host's prompt does", () => {
  fc.assert(
    fc.property(hostile, fc.integer({ min: 1, max: 120 }), (s, max) => {
      expect(browser.escapeUnsafe(s)).toBe(escapeUnsafe(s));
      expect(browser.quoteText(s, max)).toBe(quoteText(s, max));
      expect(browser.showName(s)).toBe(showName(s));
    }),
    { numRuns: 2000 },
  );
});

test("a guest named with a bidi override, a zero-width space and a C1 escape is shown quoted with each escaped", () => {
  expect(browser.showName("mal\u202elory\u200bx\u009bz")).toBe('"mal\\u202elory\\u200bx\\u009bz"');
  expect(browser.showName("alice")).toBe("alice");
});
