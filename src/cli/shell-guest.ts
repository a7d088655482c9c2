// `join` on a shell share: open the session's terminal stream, attach the local terminal, carry on
// over a new stream when the session resumes after a lost connection, and leave with the remote
// shell's exit status.
import { ConfigError, TesseraError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { backoff, sleep } from "../wire/backoff.ts";
import type { Approved, Guest } from "../guest/guest.ts";
import type { GuestMode } from "./guest-mode.ts";
import { exitStatus } from "./command-runner.ts";
import { TerminalAttachment, type StreamResult } from "./terminal-attach.ts";

const log = logger("join");
/** Streams in a row that close before the host says ready: past this the host's terminal is gone. */
const MAX_FAILED_STREAMS = 4;
/** Refusals worth waiting out: the host's agent or this guest is still reconnecting. */
const TRANSIENT = new Set(["host_offline", "detached", "stream"]);

export async function runShellGuest(
  guest: Guest,
  approved: Approved,
  stopped: Promise<string>,
  mode: GuestMode,
): Promise<void> {
  if (mode.kind !== "forward" || mode.local) {
    await guest.close();
    throw new ConfigError(
      "this share is a shell: join it without --local, --stdio or `-- COMMAND` (pipe commands into join's stdin instead)",
    );
  }
  const term = new TerminalAttachment({
    onReady: ({ readOnly, recorded, escape: escapeKey, again }) => {
      if (again) return void process.stderr.write("\r\n[tessera] back on the same shell\r\n");
      const notes = [
        readOnly ? "read-only: you watch, the host types" : "",
        recorded ? "the host records this session" : "",
        escapeKey ? "~. disconnects" : "",
      ].filter(Boolean);
      log.info(
        `session ${approved.sessionId}: connected to a shell on the host${notes.length ? ` (${notes.join("; ")})` : ""}`,
      );
    },
  });
  let stop: string | undefined;
  void stopped.then((why) => {
    stop = why;
    term.detach();
  });
  let last: StreamResult | undefined;
  let failure: string | undefined;
  for (let failed = 0; stop === undefined; ) {
    let stream: Awaited<ReturnType<Guest["openStream"]>>;
    try {
      stream = await guest.openStream();
    } catch (err) {
      const code = err instanceof TesseraError ? err.code : "";
      if (stop !== undefined || !TRANSIENT.has(code) || ++failed > MAX_FAILED_STREAMS) {
        failure = errorMessage(err);
        break;
      }
      await Promise.race([stopped, sleep(backoff(failed, 5_000))]);
      continue;
    }
    if (stop !== undefined) {
      stream.destroy();
      break;
    }
    last = await term.run(stream);
    if (last.exit || last.error || term.disconnected) break;
    // The stream dropped with the shell still running: a lost connection (the guest resumes, and
    // openStream waits for it) or the session ending (the reason arrives on the control connection).
    failed = last.ready ? 0 : failed + 1;
    if (failed > MAX_FAILED_STREAMS) {
      failure = "the host's terminal for this session is gone";
      break;
    }
    if (failed) await Promise.race([stopped, sleep(backoff(failed, 5_000))]);
  }
  term.close();
  // Cut off rather than exited: whatever the program on screen had set (alternate screen, hidden cursor) stays.
  if (!last?.exit) term.resetScreen();
  // A stream can close a moment before the control connection says why (host ended it, revoke): wait for the reason.
  if (stop === undefined && !last?.exit && !last?.error && !term.disconnected)
    await Promise.race([stopped, sleep(2000)]);
  await guest.close();
  if (last?.exit) {
    const status = exitStatus(last.exit);
    process.stderr.write(
      `\r\nremote shell exited with status ${status}${last.exit.signal ? ` (${last.exit.signal})` : ""}\n`,
    );
    process.exitCode = status;
    return;
  }
  const why = term.disconnected
    ? "disconnected (~.)"
    : (stop ?? last?.error ?? failure ?? "the terminal stream closed");
  if (why === "interrupted" || why === "disconnected (~.)") log.info(`session closed (${why})`);
  else {
    log.warn(why);
    process.exitCode = 1;
  }
}
