// Unit tests for src/coordinator/limits.ts: the fixed-window RateLimiter, driven with explicit clock values.
import { describe, expect, test } from "bun:test";
import { LIMITS, RateLimiter } from "../../src/coordinator/limits.ts";

describe("RateLimiter", () => {
  test("allows N per window and refuses N+1", () => {
    const rl = new RateLimiter(3, 1000);
    const t0 = 1_000_000;
    expect(rl.allow("a", t0)).toBe(true);
    expect(rl.allow("a", t0 + 10)).toBe(true);
    expect(rl.allow("a", t0 + 20)).toBe(true);
    expect(rl.allow("a", t0 + 30)).toBe(false);
    expect(rl.allow("a", t0 + 999)).toBe(false);
  });

  test("resets once the window has passed", () => {
    const rl = new RateLimiter(2, 1000);
    const t0 = 5_000;
    expect(rl.allow("a", t0)).toBe(true);
    expect(rl.allow("a", t0)).toBe(true);
    expect(rl.allow("a", t0 + 999)).toBe(false);
    // The window is measured from its first hit: exactly windowMs later is a new window.
    expect(rl.allow("a", t0 + 1000)).toBe(true);
    expect(rl.allow("a", t0 + 1001)).toBe(true);
    expect(rl.allow("a", t0 + 1002)).toBe(false);
    expect(rl.allow("a", t0 + 2000)).toBe(true);
  });

  test("keys are independent", () => {
    const rl = new RateLimiter(1, 1000);
    const t0 = 0;
    expect(rl.allow("10.0.0.1", t0)).toBe(true);
    expect(rl.allow("10.0.0.1", t0 + 1)).toBe(false);
    expect(rl.allow("10.0.0.2", t0 + 1)).toBe(true);
    expect(rl.allow("10.0.0.2", t0 + 2)).toBe(false);
    expect(rl.allow("10.0.0.1", t0 + 2)).toBe(false);
  });

  test("default window is one minute", () => {
    const rl = new RateLimiter(LIMITS.redeemPerMinute);
    const t0 = 1_700_000_000_000;
    for (let i = 0; i < LIMITS.redeemPerMinute; i++) expect(rl.allow("k", t0 + i)).toBe(true);
    expect(rl.allow("k", t0 + 59_999)).toBe(false);
    expect(rl.allow("k", t0 + 60_000)).toBe(true);
  });

  test("a zero allowance refuses everything", () => {
    const rl = new RateLimiter(0, 1000);
    expect(rl.allow("a", 0)).toBe(false);
    expect(rl.allow("a", 5000)).toBe(false);
  });

  test("sweeping at maxKeys keeps live keys' counts and still limits", () => {
    const rl = new RateLimiter(1, 1000, 3);
    expect(rl.allow("a", 0)).toBe(true);
    expect(rl.allow("b", 0)).toBe(true);
    expect(rl.allow("c", 500)).toBe(true);
    // Map is full; adding "d" at 1000 sweeps the expired a and b but keeps c's window.
    expect(rl.allow("d", 1000)).toBe(true);
    expect(rl.allow("c", 1000)).toBe(false);
    expect(rl.allow("d", 1001)).toBe(false);
    expect(rl.allow("a", 1001)).toBe(true);
  });
});
