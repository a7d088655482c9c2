// The host's own view of a shared shell (--watch, --read-only): the screen mirrored live, the host's
// keystrokes sent to the shell, and Ctrl-] to end the session at any moment.
import { logger } from "../log.ts";
import type { ShellSession } from "../shell/host.ts";
import type { Approver } from "./approver.ts";

const log = logger("share");
/** Ctrl-]: telnet's escape; not a key shells or editors commonly need. */
const END_KEY = 0x1d;

export class HostConsole {
  private current: { s: ShellSession; off: () => void } | undefined;
  private readonly waiting: ShellSession[] = [];

  constructor(
    private readonly approver: Approver,
    private readonly endSession: (s: ShellSession) => void,
  ) {}

  /** A session started: watch it now, or once the one on screen ends (one at a time; all are recorded). */
  offer(s: ShellSession): void {
    if (this.current) {
      this.waiting.push(s);
      process.stderr.write(
        `\r\n[tessera] session ${s.sessionId} of ${s.guestName} started; you will watch it when this one ends\r\n`,
      );
    } else this.attach(s);
  }

  gone(s: ShellSession): void {
    if (this.current?.s === s) this.detach();
    else {
      const i = this.waiting.indexOf(s);
      if (i >= 0) this.waiting.splice(i, 1);
    }
  }

  private attach(s: ShellSession): void {
    this.approver.suspend();
    const stdin = process.stdin;
    const tty = !!stdin.isTTY;
    process.stderr.write(
      `── watching session ${s.sessionId} of ${s.guestName}${s.readOnly ? " (read-only: only your keystrokes reach the shell)" : " (you and the guest both type)"}` +
        `${s.recording ? `, recording to ${s.recording}` : ""} · Ctrl-] ends it ──\r\n`,
    );
    const onKeys = (chunk: Buffer) => {
      const i = chunk.indexOf(END_KEY);
      if (i < 0) return s.hostInput(chunk);
      if (i > 0) s.hostInput(chunk.subarray(0, i));
      this.endSession(s);
    };
    // The shell fits the smallest attached window (the host's alone in read-only mode).
    const onWinch = () => {
      if (process.stdout.isTTY) s.hostSize({ cols: process.stdout.columns, rows: process.stdout.rows });
    };
    const unwatch = s.watch((data) => process.stdout.write(data));
    if (tty) stdin.setRawMode(true);
    stdin.on("data", onKeys);
    stdin.resume();
    process.on("SIGWINCH", onWinch);
    onWinch();
    const restore = () => {
      if (tty) stdin.setRawMode(false);
    };
    process.on("exit", restore);
    this.current = {
      s,
      off: () => {
        unwatch();
        stdin.off("data", onKeys);
        process.off("SIGWINCH", onWinch);
        s.hostSize(undefined);
        process.off("exit", restore);
        restore();
      },
    };
  }

  private detach(): void {
    const cur = this.current!;
    this.current = undefined;
    cur.off();
    process.stderr.write(`\r\n── stopped watching session ${cur.s.sessionId} ──\n`);
    const next = this.waiting.shift();
    if (next) this.attach(next);
    else this.approver.resume();
  }

  /** Puts the terminal back before the process leaves. */
  close(): void {
    if (this.current) this.current.off();
    this.current = undefined;
    log.debug("host console closed");
  }
}
