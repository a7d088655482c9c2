// Terminal helpers: a spinner that only spins on a TTY, and one-line questions.
import readline from "node:readline";
import { setPrompt } from "../log.ts";

export function spinner(text: string): { stop(): void } {
  if (!process.stderr.isTTY) {
    process.stderr.write(`${text}\n`);
    return { stop() {} };
  }
  const frames = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
  let i = 0;
  // Kept as the screen's status line: a message logged meanwhile clears it, goes above, and it is drawn again.
  const draw = () => {
    const line = `${frames[i++ % frames.length]} ${text}`;
    setPrompt(line);
    process.stderr.write(`\r\x1b[K${line}`);
  };
  draw();
  const t = setInterval(draw, 100);
  return {
    stop() {
      clearInterval(t);
      setPrompt(undefined);
      process.stderr.write("\r\x1b[K");
    },
  };
}

/** Asks one question on the terminal; resolves with the trimmed answer ("" on end of input). */
export function ask(question: string): Promise<string> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: false });
  process.stderr.write(question);
  return new Promise((resolve) => {
    let done = false;
    rl.once("line", (line) => {
      done = true;
      rl.close();
      resolve(line.trim());
    });
    rl.once("close", () => {
      if (!done) resolve("");
    });
  });
}

// Kept here too so existing imports keep working; the lookup lives in its own module.
export { osUser } from "./os-user.ts";
