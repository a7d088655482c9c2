// Unit tests for src/cli/answer.ts: what the host types at the prompt, parsed before anything is sent.
import { expect, test } from "bun:test";
import { parseAnswer } from "../src/cli/answer.ts";

test("y, n, Enter and the scoped answers", () => {
  expect(parseAnswer("y", false)).toEqual({ allow: true });
  expect(parseAnswer("YES", false)).toEqual({ allow: true });
  expect(parseAnswer("", false)).toEqual({ allow: false });
  expect(parseAnswer("n", false)).toEqual({ allow: false });
  expect(parseAnswer("n too busy", false)).toEqual({ allow: false, reason: "too busy" });
  expect(parseAnswer("no  come back at 3\x1b[31m", false)).toEqual({ allow: false, reason: "come back at 3 [31m" });
  expect(parseAnswer("y 15m", false)).toEqual({ allow: true, scope: { ttlMs: 900_000 } });
  expect(parseAnswer("y 1", false)).toEqual({ allow: true, scope: { streams: 1 } });
  expect(parseAnswer("y 20s 3", false)).toEqual({ allow: true, scope: { ttlMs: 20_000, streams: 3 } });
  expect(parseAnswer("ro", true)).toEqual({ allow: true, scope: { readOnly: true } });
  expect(parseAnswer("y 2h ro", true)).toEqual({ allow: true, scope: { ttlMs: 7_200_000, readOnly: true } });
  expect(parseAnswer("?", false)).toEqual({ help: true });
});

test("anything else is asked again, never taken for a yes", () => {
  expect(parseAnswer("yy", false)).toHaveProperty("problem");
  expect(parseAnswer("ro", false)).toEqual({ problem: "ro is for shell shares: this guest asks for a port" });
  expect(parseAnswer("y 0", false)).toHaveProperty("problem");
  expect(parseAnswer("y 8d", false)).toHaveProperty("problem");
  expect(parseAnswer("y forever", false)).toHaveProperty("problem");
  expect(parseAnswer("sure", false)).toHaveProperty("problem");
});

test("a time past the week names the maximum; two times or two counts are errors; ro needs a watched shell", () => {
  expect(parseAnswer("y 1000h", false)).toEqual({
    problem: '"1000h" is too long: at most 168h (7 days); answer y for no time limit',
  });
  expect(parseAnswer("y 168h", false)).toEqual({ allow: true, scope: { ttlMs: 168 * 3_600_000 } });
  expect(parseAnswer("y 1 1", false)).toEqual({ problem: 'give one number of connections, not two ("1")' });
  expect(parseAnswer("y 5m 10m", false)).toEqual({ problem: 'give one time, not two ("10m")' });
  expect(parseAnswer("y 5000", false)).toEqual({ problem: '"5000" connections: give 1 to 4096' });
  expect(parseAnswer("ro", true, { unwatched: true })).toHaveProperty("problem");
  expect(parseAnswer("ro", true, { unwatched: false })).toEqual({ allow: true, scope: { readOnly: true } });
});
