// The reconnecting status line is redrawn in place with \r: it must fit the terminal, or it wraps and the
// redraw leaves its head behind on every attempt.
import { expect, test } from "bun:test";
import { fitWidth } from "../../src/cli/outage.ts";

test("a status longer than the terminal is cut to its width with an ellipsis; a short one is kept", () => {
  const long = `  … still reconnecting (12s so far; last: ${"cannot reach the coordinator at relay.example.com:8443: connection refused ".repeat(2)}); next try in 3.2s`;
  for (const cols of [40, 80, 120]) {
    const line = fitWidth(long, cols);
    expect(line.length).toBeLessThan(cols);
    expect(line.endsWith("…")).toBe(true);
  }
  expect(fitWidth("  … still reconnecting (1s so far); next try in 1.0s", 80)).toBe(
    "  … still reconnecting (1s so far); next try in 1.0s",
  );
});
