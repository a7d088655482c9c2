// Unit test for src/cli/plain-text.ts: escape codes dropped across chunk boundaries, CR LF made LF.
import { expect, test } from "bun:test";
import { plainTextFilter } from "../src/cli/plain-text.ts";
test("escape sequences straddling chunks are dropped; CR LF becomes LF", () => {
  const f = plainTextFilter();
  const a = f(Buffer.from("\x1b[?2004hhello\x1b[0m\r"));
  const b = f(Buffer.from("\n\x1b]0;title\x07ok\x1b"));
  const c = f(Buffer.from("[31mred\r\n"));
  expect(Buffer.concat([a, b, c]).toString()).toBe("hello\nokred\n");
});
