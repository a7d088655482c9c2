// Unit tests for src/cli/duration.ts: durations in flags stay within what a timer can wait.
import { expect, test } from "bun:test";
import { MAX_TIMER_MS, parseDuration } from "../../src/cli/duration.ts";
import { ConfigError } from "../../src/errors.ts";

test("durations read in their units", () => {
  expect(parseDuration("500ms", "x")).toBe(500);
  expect(parseDuration("90", "x")).toBe(90_000);
  expect(parseDuration("1.5m", "x")).toBe(90_000);
  expect(parseDuration("596h", "x")).toBe(596 * 3_600_000);
});

// Found by the property tests (test/props/cli.test.ts): a duration past setTimeout's signed 32-bit reach
// was taken, and Bun then fires such a timer after 1 ms, so `--idle-timeout 600h` would close every session
// at once; a long run of digits even gave Infinity.
test("a duration a timer cannot wait is refused, naming the longest one", () => {
  for (const text of ["597h", `${MAX_TIMER_MS + 1}ms`, "10000000", "9".repeat(400)])
    expect(() => parseDuration(text, "idle-timeout")).toThrow(
      new ConfigError(`--idle-timeout must be at most 596h (got "${text}")`),
    );
  expect(parseDuration(`${MAX_TIMER_MS}ms`, "x")).toBe(MAX_TIMER_MS);
  // A lifetime only compared with clocks (an enrolment token's) may be longer.
  expect(parseDuration("720h", "ttl", Number.MAX_SAFE_INTEGER)).toBe(720 * 3_600_000);
});
