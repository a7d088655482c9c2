// `join` on a shell share: open the session's one terminal stream, attach the local terminal, and
// leave with the remote shell's exit status.
import { logger } from "../log.ts";
import type { Approved, Guest } from "../relay/guest.ts";
import { attachTerminal, exitStatus } from "./terminal-attach.ts";

const log = logger("join");

export async function runShellGuest(guest: Guest, approved: Approved, stopped: Promise<string>): Promise<void> {
  let stream;
  try {
    stream = await guest.openStream();
  } catch (err) {
    guest.close();
    throw err;
  }
  const attach = attachTerminal(stream, {
    onReady: ({ readOnly, recorded, escape }) => {
      const notes = [readOnly ? "read-only: you watch, the host types" : "", recorded ? "the host records this session" : "", escape ? "~. disconnects" : ""].filter(Boolean);
      log.info(`session ${approved.sessionId}: connected to a shell on the host${notes.length ? ` (${notes.join("; ")})` : ""}`);
    },
  });
  const first = await Promise.race([attach.done.then(() => undefined), stopped]);
  // The session ending (host hung up, revoke, Ctrl-C) cuts the terminal; a status that already arrived still wins.
  if (first !== undefined) attach.detach();
  const r = await attach.done;
  let stop = first;
  // The stream can close a moment before the control connection says why (host ended it, revoke): wait for the reason.
  if (stop === undefined && !r.exit && !r.error) stop = await Promise.race([stopped, Bun.sleep(2000).then(() => undefined)]);
  guest.close();
  if (r.exit) {
    const status = exitStatus(r.exit);
    process.stderr.write(`\r\nremote shell exited with status ${status}${r.exit.signal ? ` (${r.exit.signal})` : ""}\n`);
    process.exitCode = status;
  } else {
    const why = stop ?? r.error ?? "the terminal stream closed";
    if (why === "interrupted" || why === "disconnected (~.)") log.info(`session closed (${why})`);
    else {
      log.warn(why);
      process.exitCode = 1;
    }
  }
}
