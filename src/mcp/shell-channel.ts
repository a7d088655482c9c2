// An AI agent's side of a shared shell: speaks the shell protocol over the session's stream (as
// cli/terminal-attach.ts does for a person at a terminal), keeps what the remote shell prints in a
// bounded buffer, and hands it out as plain text in pieces. A dropped stream is opened again on the
// next use; the host keeps the same terminal meanwhile.
import type { Duplex } from "node:stream";
import { TesseraError, errorMessage } from "../errors.ts";
import { framesBefore } from "../wire/length-prefix.ts";
import { encodeControl, encodeData, HostControl, SHELL_PROTOCOL_VERSION, ShellDecoder } from "../shell/frames.ts";
import { plainText } from "./untrusted.ts";

/** Output kept unread; past it the oldest is dropped (and counted) rather than held without bound. */
export const MAX_UNREAD_BYTES = 1024 * 1024;
/** The most output one tool result carries; the rest waits for the next shell_read. */
export const MAX_READ_BYTES = 32 * 1024;
const READY_TIMEOUT_MS = 20_000;
/** The agent's terminal: wide enough for most output, TERM=dumb so programs skip colours and cursor games. */
const HELLO = { t: "hello", v: SHELL_PROTOCOL_VERSION, cols: 160, rows: 50, term: "dumb", tty: false } as const;

export interface ShellOutput {
  text: string;
  /** Bytes dropped unread since the last read, because the agent read too slowly. */
  dropped: number;
  /** Bytes still unread after this piece. */
  more: number;
  exit?: { code: number | null; signal: string | null };
  /** Why the terminal is gone, if it is (other than the shell exiting). */
  ended?: string;
}

export class ShellChannel {
  readOnly = false;
  recorded = false;
  private stream: Duplex | undefined;
  private chunks: Buffer[] = [];
  private unread = 0;
  private dropped = 0;
  private exit: ShellOutput["exit"];
  private ended: string | undefined;
  private readonly utf8 = new TextDecoder("utf-8");
  private wakers: (() => void)[] = [];

  private constructor(private readonly openStream: () => Promise<Duplex>) {}

  /** Opens the session's terminal; resolves once the host's side said ready. */
  static async open(openStream: () => Promise<Duplex>): Promise<ShellChannel> {
    const c = new ShellChannel(openStream);
    await c.connect();
    return c;
  }

  get gone(): boolean {
    return this.exit !== undefined || this.ended !== undefined;
  }

  /** Types `input` into the remote terminal (reconnecting the stream first if it dropped). */
  async type(input: string): Promise<void> {
    if (this.exit)
      throw new TesseraError(
        "closed",
        `the remote shell has exited (status ${this.exit.code ?? this.exit.signal}); close the session with access_close`,
      );
    if (this.ended) throw new TesseraError("closed", `the remote terminal is gone: ${this.ended}`);
    if (this.readOnly)
      throw new TesseraError(
        "not_allowed",
        "the host shares this shell read-only: you can watch (shell_read) but not type",
      );
    if (!this.stream) await this.connect();
    for (const f of encodeData(Buffer.from(input, "utf8"))) this.stream!.write(f);
  }

  /** Resolves after `ms`, or sooner once the shell exits or its stream closes, or `signal` aborts. */
  settle(ms: number, signal?: AbortSignal): Promise<void> {
    if (ms <= 0 || this.gone) return Promise.resolve();
    return new Promise((resolve) => {
      let finished = false;
      const done = () => {
        finished = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
      const check = () => {
        if (finished) return;
        if (this.gone || !this.stream) done();
        else this.wakers.push(check);
      };
      this.wakers.push(check);
    });
  }

  /** The oldest unread output, up to MAX_READ_BYTES, as plain text. */
  read(): ShellOutput {
    const all = Buffer.concat(this.chunks);
    const piece = all.subarray(0, MAX_READ_BYTES);
    const rest = all.subarray(piece.length);
    this.chunks = rest.length ? [Buffer.from(rest)] : [];
    this.unread = rest.length;
    const out: ShellOutput = {
      text: plainText(this.utf8.decode(piece, { stream: true })),
      dropped: this.dropped,
      more: rest.length,
      exit: this.exit,
      ended: this.ended,
    };
    this.dropped = 0;
    return out;
  }

  close(): void {
    this.ended ??= "the session was closed";
    this.stream?.destroy();
  }

  private connect(): Promise<void> {
    return this.openStream().then(
      (stream) => this.attach(stream),
      (err) => {
        throw new TesseraError("stream", `cannot open the remote terminal: ${errorMessage(err)}`);
      },
    );
  }

  private attach(stream: Duplex): Promise<void> {
    const decoder = new ShellDecoder(HostControl);
    return new Promise((resolve, reject) => {
      let ready = false;
      const fail = (why: string) => {
        reject(new TesseraError("stream", why));
        stream.destroy();
      };
      const timer = setTimeout(() => fail("the host's terminal did not answer in time"), READY_TIMEOUT_MS);
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
          if (!ready) {
            if (f.t !== "ready") return fail(`the host's first shell frame was "${f.t}", not ready`);
            ready = true;
            clearTimeout(timer);
            this.readOnly = f.readOnly;
            this.recorded = f.recorded;
            this.stream = stream;
            resolve();
          } else if (f.t === "data") this.keep(f.data);
          else if (f.t === "exit") this.exit = { code: f.code, signal: f.signal };
        }
        if (broke) {
          this.ended = broke;
          return fail(broke);
        }
        this.wake();
      });
      stream.on("end", () => stream.end());
      stream.on("error", () => {}); // how the stream closed says enough
      stream.on("close", () => {
        clearTimeout(timer);
        if (this.stream === stream) this.stream = undefined;
        if (!ready) reject(new TesseraError("stream", "the host's terminal closed before it was ready"));
        this.wake();
      });
      stream.write(encodeControl(HELLO));
    });
  }

  private keep(data: Buffer): void {
    this.chunks.push(data);
    this.unread += data.length;
    while (this.unread > MAX_UNREAD_BYTES && this.chunks.length > 1) {
      const old = this.chunks.shift()!;
      this.unread -= old.length;
      this.dropped += old.length;
    }
  }

  private wake(): void {
    for (const w of this.wakers.splice(0)) w();
  }
}
