// `tessera approve --exec CMD`: a command run on each new ask (notify-send, osascript). The request's fields
// reach it only as arguments and environment variables, each escaped (no control characters) and never parsed
// by a shell: `sh -c CMD` sees them as "$1".."$4" and $TESSERA_GUEST..., so a guest's words cannot become code.
import { logger } from "../log.ts";
import type { Waiting } from "../host/consent.ts";
import { quoteText, showName } from "../wire/untrusted-text.ts";

const log = logger("approve");
/** Commands running at once; asks past this are not announced (the prompt still shows them). */
const MAX_RUNNING = 4;
let running = 0;

export function askFields(w: Waiting): { guest: string; reason: string; target: string; share: string } {
  return {
    guest: showName(w.ask.guest.name),
    reason: quoteText(w.ask.reason),
    target: w.ask.target,
    share: w.ask.shareId,
  };
}

/** Runs CMD for this ask: `sh -c CMD tessera-ask GUEST REASON TARGET SHARE`, the same fields in TESSERA_* too. */
export function execForAsk(cmd: string, w: Waiting): void {
  if (running >= MAX_RUNNING) return log.warn(`--exec: ${MAX_RUNNING} commands still run; this ask is not announced`);
  const f = askFields(w);
  running++;
  try {
    const p = Bun.spawn(["sh", "-c", cmd, "tessera-ask", f.guest, f.reason, f.target, f.share], {
      env: {
        ...process.env,
        TESSERA_GUEST: f.guest,
        TESSERA_REASON: f.reason,
        TESSERA_TARGET: f.target,
        TESSERA_SHARE: f.share,
      },
      stdin: "ignore",
      stdout: "ignore",
      stderr: "inherit",
    });
    void p.exited.then((code) => {
      running--;
      if (code !== 0) log.warn(`--exec exited with status ${code}`);
    });
  } catch (err) {
    running--;
    log.warn(`--exec could not run: ${(err as Error).message}`);
  }
}
