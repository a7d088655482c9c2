// The console's chain check runs `tessera audit verify FILE --cert CERT --json`, this very binary, in a
// child process: the same code as the operator's own command, and the walk over a large log never
// blocks the coordinator's event loop (where the relay runs).
import type { VerifyResult } from "../audit/verify.ts";
import type { Verifier } from "./audit-view.ts";

const TIMEOUT_MS = 120_000;
const MAX_OUTPUT = 1024 * 1024;

/** How to start this program again: the compiled binary alone, or bun with the entry script. */
function self(): string[] {
  return Bun.main.startsWith("/$bunfs/") || /^[A-Z]:\\~BUN\\/.test(Bun.main)
    ? [process.execPath]
    : [process.execPath, Bun.main];
}

/** `argv`: the program to run (this one by default; a test names the built binary). */
export function childVerifier(certFile: string, argv = self()): Verifier {
  return async (file) => {
    const p = Bun.spawn([...argv, "audit", "verify", file, "--cert", certFile, "--json"], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, NO_COLOR: "1" },
    });
    const timer = setTimeout(() => p.kill("SIGKILL"), TIMEOUT_MS);
    try {
      const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      if (out.length > MAX_OUTPUT) throw new Error("audit verify said more than expected");
      // It prints its JSON whether the chain holds (exit 0) or not (exit 1).
      const line = out.trim().split("\n").at(-1) ?? "";
      if (!line.startsWith("{"))
        throw new Error(`audit verify failed: ${err.trim().slice(0, 300) || `exit ${p.exitCode}`}`);
      const r = JSON.parse(line) as VerifyResult & { chains?: VerifyResult[] };
      return r.chains ? r.chains.at(-1)! : r;
    } finally {
      clearTimeout(timer);
    }
  };
}
