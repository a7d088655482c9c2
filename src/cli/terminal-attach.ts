import type { Duplex } from "node:stream";
import { errorMessage } from "../errors.ts";
import { framesBefore } from "../wire/length-prefix.ts";
import { plainTextFilter } from "./plain-text.ts";
import { encodeControl, encodeData, HostControl, SHELL_PROTOCOL_VERSION, ShellDecoder } from "../shell/frames.ts";

export interface StreamResult {
  /** The host said ready on this stream. */
  ready: boolean;
  /** The remote shell's exit, when it got that far. */
  exit?: { code: number | null; signal: string | null };
  /** Why the stream ended otherwise (protocol error, ~. typed, local failure). */
  error?: string;
}

export interface AttachEvents {
  /** The host's side is up on a stream; `again` when it is the same shell on a later stream. */
  onReady?(info: { readOnly: boolean; recorded: boolean; escape: boolean; again: boolean }): void;
}

/**
 * What a full-screen program may have left set when its shell is cut off (kick, revoke, host gone), put back
 * as ssh and tmux do: leave the alternate screen, show the cursor, mouse reporting and bracketed paste off,
 * normal cursor keys and keypad, plain attributes.
 */
export const SCREEN_RESET =
  "\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\x1b[?1l\x1b>\x1b[0m";

/** Input typed while no stream is up waits for the next one, up to this much. */
const MAX_PENDING_INPUT = 64 * 1024;
const TILDE = 0x7e;
const DOT = 0x2e;

export class TerminalAttachment {
  /** The guest typed ~. : the session should end, not be resumed. */
  disconnected = false;
  private readonly stdin = process.stdin;
  private readonly tty = !!process.stdin.isTTY;
  private readonly escape = escapeFilter();
  /** Output to a file or pipe gets no escape codes (colours, cursor moves) and plain line ends. */
  private readonly plain = process.stdout.isTTY ? undefined : plainTextFilter();
  private stream: Duplex | undefined;
  private ready = false;
  private everReady = false;
  private raw = false;
  private inputOn = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private eofPending = false;

  constructor(private readonly events: AttachEvents = {}) {
    // If anything takes the process down mid-session, the terminal still comes back cooked.
    process.on("exit", this.restore);
  }

  /** Speaks the shell protocol over one stream until it closes. */
  run(stream: Duplex): Promise<StreamResult> {
    this.stream = stream;
    this.ready = false;
    const decoder = new ShellDecoder(HostControl);
    const result: StreamResult = { ready: false };
    return new Promise((resolve) => {
      stream.on("data", (chunk: Buffer) => {
        let frames: ReturnType<typeof decoder.push>;
        let broke: string | undefined;
        try {
          frames = decoder.push(chunk);
        } catch (err) {
          // Whole frames before the bad bytes count, as if they had come in a read of their own.
          frames = framesBefore(err);
          broke = `the host broke the shell protocol: ${errorMessage(err)}`;
        }
        for (const f of frames) {
          if (!this.ready) {
            if (f.t !== "ready") {
              result.error = `the host's first shell frame was "${f.t}", not ready`;
              return void stream.destroy();
            }
            result.ready = true;
            this.onReady(f);
          } else if (f.t === "data") this.show(stream, f.data);
          else if (f.t === "exit") result.exit = { code: f.code, signal: f.signal };
        }
        if (broke) {
          result.error = broke;
          stream.destroy();
        }
      });
      stream.on("end", () => stream.end());
      stream.on("error", () => {}); // a broken stream is reported by how it closed
      stream.on("close", () => {
        if (this.stream === stream) {
          this.stream = undefined;
          this.ready = false;
        }
        if (this.disconnected && !result.exit) result.error = "disconnected (~.)";
        resolve(result);
      });
      const size = windowSize() ?? { cols: 80, rows: 24 };
      stream.write(encodeControl({ t: "hello", v: SHELL_PROTOCOL_VERSION, ...size, term: termName(), tty: this.tty }));
    });
  }

  /** Cuts the current stream (the session is ending). */
  detach(): void {
    this.stream?.destroy();
  }

  /** Stops reading the keyboard and puts the terminal back. */
  close(): void {
    this.detach();
    if (this.inputOn) {
      this.inputOn = false;
      this.stdin.off("data", this.onInput);
      this.stdin.off("end", this.onInputEnd);
      this.stdin.pause();
      process.off("SIGWINCH", this.onWinch);
    }
    process.off("exit", this.restore);
    this.restore();
  }

  /** After a shell that did not exit by itself: the screen modes it may have set, reset (a terminal only). */
  resetScreen(): void {
    if (this.everReady && process.stdout.isTTY) process.stdout.write(SCREEN_RESET);
  }

  private onReady(f: { readOnly: boolean; recorded: boolean }): void {
    this.events.onReady?.({ readOnly: f.readOnly, recorded: f.recorded, escape: this.tty, again: this.everReady });
    this.everReady = true;
    this.ready = true;
    this.startInput();
    for (const b of this.pending.splice(0)) this.sendData(b);
    this.pendingBytes = 0;
    if (this.eofPending) this.send(encodeControl({ t: "eof" }));
    this.eofPending = false;
  }

  private show(stream: Duplex, data: Buffer): void {
    // Backpressure: stop reading the host while the local terminal is behind.
    if (!process.stdout.write(this.plain ? this.plain(data) : data) && !stream.isPaused()) {
      stream.pause();
      process.stdout.once("drain", () => stream.resume());
    }
  }

  private startInput(): void {
    if (this.inputOn) return;
    this.inputOn = true;
    if (this.tty) {
      this.stdin.setRawMode(true);
      this.raw = true;
    }
    this.stdin.on("data", this.onInput);
    this.stdin.on("end", this.onInputEnd);
    this.stdin.resume();
    process.on("SIGWINCH", this.onWinch);
  }

  private readonly onInput = (chunk: Buffer): void => {
    // Sent even in read-only mode: the host drops it, so read-only never depends on this client.
    const filtered = this.tty ? this.escape(chunk) : chunk;
    if (filtered === "disconnect") {
      this.disconnected = true;
      this.detach();
      return;
    }
    if (this.ready) return this.sendData(filtered);
    // Between streams (resuming): keep a little for the next one rather than lose it.
    if (this.pendingBytes + filtered.length <= MAX_PENDING_INPUT) {
      this.pending.push(filtered);
      this.pendingBytes += filtered.length;
    }
  };

  private readonly onInputEnd = (): void => {
    if (this.ready) this.send(encodeControl({ t: "eof" }));
    else this.eofPending = true;
  };

  private readonly onWinch = (): void => {
    const s = windowSize();
    if (s && this.ready) this.send(encodeControl({ t: "resize", ...s }));
  };

  private readonly restore = (): void => {
    if (!this.raw) return;
    this.raw = false;
    try {
      this.stdin.setRawMode(false);
    } catch {}
  };

  private sendData(b: Buffer): void {
    for (const f of encodeData(b)) this.send(f);
  }

  private send(buf: Buffer): void {
    if (this.stream && !this.stream.destroyed) this.stream.write(buf);
  }
}

function windowSize(): { cols: number; rows: number } | undefined {
  for (const s of [process.stdout, process.stderr]) {
    if (s.isTTY && s.columns > 0 && s.rows > 0)
      return { cols: Math.min(1000, s.columns), rows: Math.min(1000, s.rows) };
  }
  return undefined;
}

function termName(): string {
  const t = process.env.TERM ?? "";
  return /^[A-Za-z0-9.+_-]{1,64}$/.test(t) && t !== "dumb" ? t : "xterm-256color";
}

/** ssh's escape: "~." at the start of a line disconnects, "~~" sends one "~"; anything else passes through. */
function escapeFilter(): (chunk: Buffer) => Buffer | "disconnect" {
  let lineStart = true;
  let tilde = false;
  return (chunk) => {
    const out: number[] = [];
    for (const b of chunk) {
      if (tilde) {
        tilde = false;
        if (b === DOT) return "disconnect";
        out.push(TILDE);
        if (b === TILDE) {
          lineStart = false;
          continue;
        }
      } else if (lineStart && b === TILDE) {
        tilde = true;
        continue;
      }
      out.push(b);
      lineStart = b === 0x0d || b === 0x0a;
    }
    return Buffer.from(out);
  };
}
