// The guest's terminal on a shell share: keystrokes out raw, the remote screen in, the window size
// kept in step, and the local terminal put back exactly as it was however the session ends.
import os from "node:os";
import type { Duplex } from "node:stream";
import { errorMessage } from "../errors.ts";
import { encodeControl, encodeData, HostControl, SHELL_PROTOCOL_VERSION, ShellDecoder } from "../shell/frames.ts";

export interface AttachResult {
  /** The remote shell's exit, when it got that far. */
  exit?: { code: number | null; signal: string | null };
  /** Why the terminal ended otherwise (broken stream, protocol error, ~. typed). */
  error?: string;
}

export interface AttachEvents {
  /** The host's side is up: whether the guest only watches and whether the host records. */
  onReady?(info: { readOnly: boolean; recorded: boolean; escape: boolean }): void;
}

const TILDE = 0x7e;
const DOT = 0x2e;

/** Runs the terminal until the stream ends; `detach` ends it early (the session is being closed). */
export function attachTerminal(stream: Duplex, events: AttachEvents = {}): { done: Promise<AttachResult>; detach(): void } {
  const stdin = process.stdin;
  const out = process.stdout;
  const tty = !!stdin.isTTY;
  const decoder = new ShellDecoder(HostControl);
  const result: AttachResult = {};
  let ready = false;
  let raw = false;
  let finish!: () => void;
  const done = new Promise<AttachResult>((resolve) => (finish = () => resolve(result)));

  const send = (buf: Buffer) => { if (!stream.destroyed) stream.write(buf); };
  const escape = escapeFilter();

  const onInput = (chunk: Buffer) => {
    // Sent even in read-only mode: the host drops it, so read-only never depends on this client.
    const filtered = tty ? escape(chunk) : chunk;
    if (filtered === "disconnect") {
      result.error = "disconnected (~.)";
      stream.destroy();
      return;
    }
    for (const f of encodeData(filtered)) send(f);
  };
  const onInputEnd = () => send(encodeControl({ t: "eof" }));
  const onWinch = () => {
    const s = windowSize();
    if (s) send(encodeControl({ t: "resize", ...s }));
  };
  const restore = () => {
    if (raw) {
      raw = false;
      try {
        stdin.setRawMode(false);
      } catch {}
    }
  };

  const start = () => {
    if (tty) {
      stdin.setRawMode(true);
      raw = true;
    }
    stdin.on("data", onInput);
    stdin.on("end", onInputEnd);
    stdin.resume();
    process.on("SIGWINCH", onWinch);
  };

  const stop = () => {
    stdin.off("data", onInput);
    stdin.off("end", onInputEnd);
    stdin.pause();
    process.off("SIGWINCH", onWinch);
    process.off("exit", restore);
    restore();
    finish();
  };

  // If anything takes the process down mid-session, the terminal still comes back cooked.
  process.on("exit", restore);
  stream.on("data", (chunk: Buffer) => {
    let frames;
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      result.error = `the host broke the shell protocol: ${errorMessage(err)}`;
      stream.destroy();
      return;
    }
    for (const f of frames) {
      if (!ready) {
        if (f.t !== "ready") {
          result.error = `the host's first shell frame was "${f.t}", not ready`;
          stream.destroy();
          return;
        }
        ready = true;
        events.onReady?.({ readOnly: f.readOnly, recorded: f.recorded, escape: tty });
        start();
      } else if (f.t === "data") {
        // Backpressure: stop reading the host while the local terminal is behind.
        if (!out.write(f.data) && !stream.isPaused()) {
          stream.pause();
          out.once("drain", () => stream.resume());
        }
      } else if (f.t === "exit") {
        result.exit = { code: f.code, signal: f.signal };
      }
    }
  });
  stream.on("end", () => stream.end());
  stream.on("error", (err) => {
    if (!result.exit && !result.error) result.error = errorMessage(err);
  });
  stream.on("close", stop);

  const size = windowSize() ?? { cols: 80, rows: 24 };
  send(encodeControl({ t: "hello", v: SHELL_PROTOCOL_VERSION, ...size, term: termName(), tty }));
  return { done, detach: () => stream.destroy() };
}

/** The exit status to leave with: the shell's own code, 128 + signal number, or 1 when unknown. */
export function exitStatus(exit: { code: number | null; signal: string | null }): number {
  if (exit.code !== null) return exit.code;
  const n = exit.signal ? (os.constants.signals as Record<string, number>)[exit.signal] : undefined;
  return n ? 128 + n : 1;
}

function windowSize(): { cols: number; rows: number } | undefined {
  for (const s of [process.stdout, process.stderr]) {
    if (s.isTTY && s.columns > 0 && s.rows > 0) return { cols: Math.min(1000, s.columns), rows: Math.min(1000, s.rows) };
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
