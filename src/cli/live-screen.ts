// Keeps a few lines (the live panel) at the bottom of a terminal, redrawn in place, under everything
// else this process writes: any other output first takes the panel off the screen, is written where it
// was, and the panel comes back below it; while a question is on screen (log.ts setPrompt) it stays off.
import { format } from "node:util";
import { promptShown } from "../log.ts";

type Write = typeof process.stderr.write;

export class PanelScreen {
  /** Lines of the panel now on screen; the cursor is on the line just below them. */
  private drawn = 0;
  private lines: string[] = [];
  /** Whether the last thing written ended a line: the panel never starts in the middle of one. */
  private atLineStart = true;
  private redraw: ReturnType<typeof setTimeout> | undefined;
  private readonly originals: [NodeJS.WriteStream, Write][] = [];
  private readonly consoleLog = console.log;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {
    // Every writer in this process (log lines, the approver's prompts, codes on stdout) goes through
    // these two streams; they share the one terminal with the panel, so they pass by it first.
    for (const s of [process.stdout, process.stderr]) {
      const original = s.write;
      this.originals.push([s, original]);
      s.write = ((chunk: unknown, ...rest: unknown[]) => {
        this.takeDown();
        const text =
          typeof chunk === "string" ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk).toString() : "";
        if (text) this.atLineStart = text.endsWith("\n");
        const r = (original as (...a: unknown[]) => boolean).call(s, chunk, ...rest);
        this.later();
        return r;
      }) as Write;
    }
    // Bun's console.log writes to the descriptor itself, past process.stdout.write: route it through.
    console.log = (...args: unknown[]) => void process.stdout.write(`${format(...args)}\n`);
  }

  /** The panel's new lines: the same number is rewritten line by line, any other is drawn afresh. */
  show(lines: string[]): void {
    const same = lines.length > 0 && lines.length === this.lines.length && lines.length === this.drawn;
    this.lines = lines;
    if (same) this.rewrite();
    else this.draw();
  }

  /** Takes the panel off the screen and gives the streams back. */
  stop(): void {
    clearTimeout(this.redraw);
    this.takeDown();
    for (const [s, w] of this.originals) s.write = w;
    console.log = this.consoleLog;
  }

  private raw(text: string): void {
    this.originals.find(([s]) => s === this.out)![1].call(this.out, text);
  }

  /** Whether the panel may be on screen now: not below a question, not in the middle of a line. */
  private get mayShow(): boolean {
    return !promptShown() && this.atLineStart;
  }

  private draw(): void {
    this.takeDown();
    if (!this.mayShow || !this.lines.length) return;
    this.raw(this.lines.map((l) => `${l}\x1b[K\n`).join(""));
    this.drawn = this.lines.length;
  }

  /**
   * Same number of lines: each is rewritten where it stands and the cursor goes back where it was, so
   * whatever the host is typing on the line below (k 2) stays on screen.
   */
  private rewrite(): void {
    if (!this.mayShow) return this.takeDown();
    this.raw(`\x1b7\x1b[${this.drawn}A\r${this.lines.map((l) => `${l}\x1b[K`).join("\n\r")}\x1b8`);
  }

  /**
   * Clears from the panel's first line down and leaves the cursor at its start, the last byte a newline
   * (whatever comes next starts a line of its own, as a reader of the raw output expects).
   */
  private takeDown(): void {
    if (!this.drawn) return;
    const n = this.drawn;
    this.drawn = 0;
    this.raw(`\x1b[${n}A\r\x1b[J\x1b[A\n`);
  }

  /** Brings the panel back once the other output is done (a burst of lines is one pause, not many). */
  private later(): void {
    clearTimeout(this.redraw);
    this.redraw = setTimeout(() => this.draw(), 50);
    this.redraw.unref?.();
  }
}
