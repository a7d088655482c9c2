// One shared shell: the PTY of one approved session, driven by the guest's frames over the end-to-end
// stream. Read-only is enforced here, where the PTY is: guest input never reaches it. The terminal
// outlives a dropped stream for a grace period, so a guest resuming after a lost connection gets it back.
import type { Duplex } from "node:stream";
import type { Subprocess, Terminal } from "bun";
import { errorMessage } from "../errors.ts";
import { framesBefore } from "../wire/length-prefix.ts";
import { logger } from "../log.ts";
import { encodeControl, encodeData, GuestControl, SHELL_PROTOCOL_VERSION, ShellDecoder } from "./frames.ts";
import type { ShellOptions, ShellResult, ShellSessionInfo } from "./types.ts";
import { Recorder } from "./recorder.ts";
import { showName } from "../wire/untrusted-text.ts";

const log = logger("shell");
const ECHO = 0o10; // termios c_lflag ECHO, the same bit on Linux and macOS
/** Output the guest has not read yet; past this the session ends rather than the host buffering without bound. */
export const MAX_UNREAD_BYTES = 8 * 1024 * 1024;
/** Output produced while no stream is attached, replayed on resume (older output is dropped). */
export const MAX_MISSED_BYTES = 64 * 1024;
/** How long a terminal waits for its guest after the stream dropped without the session ending. */
export const REATTACH_GRACE_MS = 3 * 60_000;
const HELLO_TIMEOUT_MS = 10_000;
/** After the shell exits: how long to wait for the PTY's last output, and for the guest to hang up. */
const [DRAIN_GRACE_MS, HANGUP_GRACE_MS] = [300, 5_000];

export interface ShellEvents {
  /** The PTY is running (and the recording open). */
  onStart?(s: ShellSession): void;
  /** First guest input thrown away by read-only (once a session, so the host knows they tried). */
  onInputDropped?(s: ShellSession): void;
  /** The session's terminal is gone: the shell exited, the guest left, or it was refused. */
  onEnd?(s: ShellSession, result: ShellResult): void;
}

export class ShellSession {
  readonly sessionId: string;
  readonly guestName: string;
  recording: string | undefined;
  private size = { cols: 80, rows: 24 };
  private guestWindow: typeof this.size | undefined;
  private hostWindow: typeof this.size | undefined;
  /** Bytes of keystrokes from the guest that read-only threw away (resizes and eof are dropped too, uncounted). */
  droppedBytes = 0;
  private proc: Subprocess | undefined;
  private term: Terminal | undefined;
  private recorder: Recorder | undefined;
  private stream: Duplex | undefined;
  private decoder = new ShellDecoder(GuestControl);
  /** The current stream has said hello (on a new stream after a resume, the PTY is already running). */
  private greeted = false;
  private missed: Buffer[] = [];
  private missedBytes = 0;
  private graceTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly watchers = new Set<(data: Uint8Array) => void>();
  private helloTimer: ReturnType<typeof setTimeout> | undefined;
  private ptyEof = false;
  private ptyDrained: (() => void) | undefined;
  private result: ShellResult | undefined;
  private finished = false;

  constructor(
    stream: Duplex,
    info: ShellSessionInfo,
    private readonly o: ShellOptions,
    private readonly events: ShellEvents,
  ) {
    this.sessionId = info.sessionId;
    // Shown on the host's screen and in the recording's title: the guest's own words, escaped.
    this.guestName = showName(info.guest.name);
    this.attach(stream);
  }

  /**
   * Takes a (new) verified stream of this session: the first starts the shell, a later one (the guest
   * resuming after a lost connection) gets the running terminal back. The newest stream wins.
   */
  attach(stream: Duplex): void {
    if (this.finished) return void stream.destroy();
    const old = this.stream;
    this.stream = stream;
    this.decoder = new ShellDecoder(GuestControl);
    this.greeted = false;
    clearTimeout(this.graceTimer);
    old?.destroy();
    stream.on("data", (chunk: Buffer) => {
      if (this.stream === stream) this.onData(chunk);
    });
    stream.on("error", (err) => log.debug(`session ${this.sessionId}: ${err.message}`));
    stream.on("close", () => {
      if (this.stream === stream) this.streamGone();
    });
    clearTimeout(this.helloTimer);
    this.helloTimer = setTimeout(() => this.fail("the guest's terminal did not say hello in time"), HELLO_TIMEOUT_MS);
  }

  get readOnly(): boolean {
    return this.o.readOnly;
  }

  /** The host's own keystrokes (from --watch / --read-only): always reach the PTY. */
  hostInput(data: Uint8Array): void {
    if (this.term && !this.term.closed) this.term.write(data);
  }

  /** The host's window while it watches: the PTY takes the smallest attached window, as tmux does (read-only: the host's). */
  hostSize(size: { cols: number; rows: number } | undefined): void {
    this.hostWindow = size;
    this.fit();
  }

  /** Tees the terminal's output to fn (the host's --watch view); returns the unsubscribe. */
  watch(fn: (data: Uint8Array) => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }

  /** Ends the session's terminal now: the stream is cut and the shell hung up. */
  end(reason: string): void {
    if (!this.result) this.result = { code: null, signal: null, error: reason };
    if (this.stream && !this.stream.destroyed) this.stream.destroy();
    else this.finish();
  }

  /** The stream closed. Unless the session is over, keep the shell for the guest to come back to. */
  private streamGone(): void {
    this.stream = undefined;
    clearTimeout(this.helloTimer);
    if (this.result || !this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return this.finish();
    log.debug(
      `session ${this.sessionId}: terminal stream dropped; keeping the shell ${REATTACH_GRACE_MS / 1000}s for the guest to resume`,
    );
    this.graceTimer = setTimeout(
      () => this.end("the guest did not come back after losing its connection"),
      REATTACH_GRACE_MS,
    );
  }

  private onData(chunk: Buffer): void {
    let frames: ReturnType<typeof this.decoder.push>;
    let broke: string | undefined;
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      // Whole frames before the bad bytes count, as if they had come in a read of their own.
      frames = framesBefore(err);
      broke = `the guest broke the shell protocol: ${errorMessage(err)}`;
    }
    for (const f of frames) {
      if (!this.greeted) {
        if (f.t !== "hello") return this.fail(`the guest's first shell frame was "${f.t}", not hello`);
        if (f.v !== SHELL_PROTOCOL_VERSION)
          return this.fail(`the guest speaks shell protocol ${f.v}; this host speaks ${SHELL_PROTOCOL_VERSION}`);
        this.greeted = true;
        clearTimeout(this.helloTimer);
        if (this.proc) this.resumed(f);
        else this.start(f);
        continue;
      }
      // Read-only is decided here and nowhere else: every frame that could touch the PTY is dropped.
      if (f.t === "hello") continue;
      if (this.o.readOnly) {
        if (f.t !== "data" || f.data.length === 0) continue;
        if (this.droppedBytes === 0) this.events.onInputDropped?.(this);
        this.droppedBytes += f.data.length;
        continue;
      }
      if (f.t === "data") this.term?.write(f.data);
      else if (f.t === "resize") {
        this.guestWindow = { cols: f.cols, rows: f.rows };
        this.fit();
      } else if (f.t === "eof") this.term?.write("\x04"); // VEOF: the shell reads end of input, as from a terminal
    }
    if (broke) this.fail(broke);
  }

  private start(hello: { cols: number; rows: number; term: string; tty: boolean }): void {
    this.guestWindow = this.size = { cols: hello.cols, rows: hello.rows };
    try {
      if (this.o.recordDir) {
        // Fail closed: a session that was promised a recording does not run without one.
        this.recorder = Recorder.open(this.o.recordDir, {
          sessionId: this.sessionId,
          cols: hello.cols,
          rows: hello.rows,
          title: `tessera shell session ${this.sessionId} for ${this.guestName}${this.o.readOnly ? " (read-only)" : ""}`,
          env: { TERM: hello.term, SHELL: this.o.argv[0] ?? "" },
        });
        this.recording = this.recorder.file;
      }
      this.proc = Bun.spawn(this.o.argv, {
        env: { ...this.o.env, TERM: hello.term, TESSERA_SESSION: this.sessionId },
        terminal: {
          cols: hello.cols,
          rows: hello.rows,
          name: hello.term,
          data: (_t, data) => this.output(data),
          exit: () => {
            this.ptyEof = true;
            this.ptyDrained?.();
          },
        },
      });
      this.term = this.proc.terminal;
      // A guest piping commands in is no person at a keyboard: the terminal does not echo them back.
      if (!hello.tty && this.term) this.term.localFlags &= ~ECHO;
    } catch (err) {
      this.fail(`cannot start ${this.o.argv.join(" ")}: ${errorMessage(err)}`);
      return;
    }
    this.sendReady();
    this.events.onStart?.(this);
    void this.proc.exited.then(() => this.exited());
  }

  /** The guest is back on a new stream: same shell, its window size (unless read-only), what it missed. */
  private resumed(hello: { cols: number; rows: number }): void {
    this.guestWindow = { cols: hello.cols, rows: hello.rows };
    this.fit();
    this.sendReady();
    const missed = Buffer.concat(this.missed);
    this.missed = [];
    this.missedBytes = 0;
    for (const f of encodeData(missed)) this.stream?.write(f);
    log.info(`session ${this.sessionId}: ${this.guestName} is back on the same shell`);
  }

  private sendReady(): void {
    this.stream?.write(
      encodeControl({ t: "ready", v: SHELL_PROTOCOL_VERSION, readOnly: this.o.readOnly, recorded: !!this.recorder }),
    );
  }

  private output(data: Uint8Array): void {
    try {
      this.recorder?.output(data);
    } catch (err) {
      // Fail closed, as at the start: no unrecorded remainder of a recorded session.
      const r = this.recorder;
      this.recorder = undefined;
      try {
        r?.close();
      } catch {}
      this.fail(`the recording stopped (${errorMessage(err)}); ending the session`);
      return;
    }
    for (const w of this.watchers) w(data);
    const stream = this.stream;
    if (!stream || stream.destroyed || !this.greeted) return this.keepMissed(data);
    if (stream.writableLength > MAX_UNREAD_BYTES) {
      this.fail(`the guest stopped reading (over ${MAX_UNREAD_BYTES >> 20} MiB of output unread)`);
      return;
    }
    for (const f of encodeData(data)) stream.write(f);
  }

  private keepMissed(data: Uint8Array): void {
    this.missed.push(Buffer.from(data));
    this.missedBytes += data.length;
    while (this.missedBytes > MAX_MISSED_BYTES && this.missed.length > 1)
      this.missedBytes -= this.missed.shift()!.length;
  }

  private fit(): void {
    const wins = [this.o.readOnly ? undefined : this.guestWindow, this.hostWindow].filter((w) => w !== undefined);
    if (wins.length) this.resize(Math.min(...wins.map((w) => w.cols)), Math.min(...wins.map((w) => w.rows)));
  }

  private resize(cols: number, rows: number): void {
    if (!this.term || this.term.closed || (cols === this.size.cols && rows === this.size.rows)) return;
    this.size = { cols, rows };
    this.term.resize(cols, rows);
    try {
      this.recorder?.resize(cols, rows);
    } catch {} // the next output write reports a failing disk and ends the session
  }

  private async exited(): Promise<void> {
    const proc = this.proc!;
    // The exit status may arrive before the last output: wait for the PTY's end (or a moment, when a
    // background job still holds it open) so the guest sees everything before the status.
    await new Promise<void>((resolve) => {
      this.ptyDrained = resolve;
      if (this.ptyEof) resolve();
      setTimeout(resolve, DRAIN_GRACE_MS);
    });
    if (!this.result) this.result = { code: proc.exitCode, signal: signalOf(proc) };
    const stream = this.stream;
    if (!stream || stream.destroyed || !this.greeted) return this.end("the shell exited while the guest was away");
    const code = proc.exitCode === null ? null : Math.min(255, Math.max(0, proc.exitCode));
    stream.write(encodeControl({ t: "exit", code, signal: signalOf(proc) }));
    stream.end();
    setTimeout(() => stream.destroy(), HANGUP_GRACE_MS).unref();
  }

  private fail(reason: string): void {
    log.warn(`session ${this.sessionId}: ${reason}`);
    this.end(reason);
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.helloTimer);
    clearTimeout(this.graceTimer);
    const proc = this.proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      // Closing the PTY hangs up its foreground jobs; the shell itself gets SIGHUP, then SIGKILL if it lingers.
      proc.kill("SIGHUP");
      const t = setTimeout(() => proc.kill("SIGKILL"), 3000);
      void proc.exited.then(() => clearTimeout(t));
    }
    this.term?.close();
    try {
      this.recorder?.close();
    } catch (err) {
      log.warn(`session ${this.sessionId}: could not finish the recording ${this.recording}: ${errorMessage(err)}`);
    }
    this.watchers.clear();
    this.events.onEnd?.(
      this,
      this.result ?? {
        code: proc?.exitCode ?? null,
        signal: proc ? signalOf(proc) : null,
        error: proc ? "the guest disconnected" : "the guest left before the shell started",
      },
    );
  }
}

function signalOf(proc: Subprocess): string | null {
  return typeof proc.signalCode === "string" ? proc.signalCode : null;
}
