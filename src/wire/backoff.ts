// Exponential backoff with full jitter, capped, so a restarted coordinator is not stampeded by every
// agent and guest at once; never below 200 ms so a restart has a moment to happen.
export function backoff(attempt: number, capMs = 30_000): number {
  return 200 + Math.random() * Math.min(capMs, 500 * 2 ** Math.min(attempt, 20));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
