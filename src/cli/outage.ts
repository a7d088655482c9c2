// What a terminal shows while the coordinator is out of reach: the loss once, then one status line kept
// up to date in place (a terminal) or nothing more (a log file), and one line when it is back.
import { logger, setPrompt } from "../log.ts";

export class OutageReport {
  private since: number | undefined;
  private readonly log;

  constructor(
    tag: string,
    private readonly tty = !!process.stderr.isTTY,
  ) {
    this.log = logger(tag);
  }

  /** The connection is lost (first call) or another attempt failed; the next one comes in delayMs. */
  retrying(reason: string | undefined, delayMs: number, lost: string): void {
    const next = `next try in ${(delayMs / 1000).toFixed(1)}s`;
    if (this.since === undefined) {
      this.since = Date.now();
      this.log.warn(`${lost}${reason ? ` (${reason})` : ""}; reconnecting by itself, ${next}`);
    }
    if (!this.tty) return;
    const down = Math.round((Date.now() - this.since) / 1000);
    // One line in place: longer than the terminal, it would wrap and the next \r would redraw only its tail.
    const status = fitWidth(
      `  … still reconnecting (${down}s so far${reason ? `; last: ${reason}` : ""}); ${next}`,
      process.stderr.columns || 80,
    );
    process.stderr.write(`\r\x1b[K${status}`);
    setPrompt(status);
  }

  /** Connected again: the status line goes, one line says so. */
  back(message: string): void {
    if (this.since === undefined) return;
    const secs = ((Date.now() - this.since) / 1000).toFixed(1);
    this.since = undefined;
    if (this.tty) {
      setPrompt(undefined);
      process.stderr.write("\r\x1b[K");
    }
    this.log.info(`${message} (after ${secs}s)`);
  }
}

/** Cuts a one-line status to the terminal's width (one column spare), ending in an ellipsis when cut. */
export function fitWidth(line: string, columns: number): string {
  const room = Math.max(20, columns - 1);
  return line.length <= room ? line : `${line.slice(0, room - 1)}…`;
}
