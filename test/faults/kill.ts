// SIGKILL for fault tests: the process is gone at once (no handler runs), and the call returns only once
// the kernel has reaped it, so what it left on disk is final.
import type { Proc } from "../e2e/harness.ts";

export async function sigkill(p: Proc): Promise<number> {
  p.proc.kill("SIGKILL");
  return await p.proc.exited;
}
