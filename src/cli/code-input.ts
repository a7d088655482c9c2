// The code for `join`, when it is not on the command line: a code in argv is visible to every local
// user (`ps`) for the whole session, so `join` asks for it without echo on a terminal (as `wormhole
// receive` does) or takes the first line of piped stdin, leaving the rest of stdin for the session.
import { ConfigError } from "../errors.ts";

const CTRL_C = 0x03;
const CTRL_D = 0x04;
const BACKSPACE = [0x08, 0x7f];

/** Reads the code: hidden at a terminal, else the first line of stdin. */
export async function readCode(stdinCarriesStream: boolean): Promise<string> {
  if (process.stdin.isTTY) return askHidden("code (from the host, not echoed): ");
  if (stdinCarriesStream)
    throw new ConfigError("with --stdio, stdin carries the stream: give the code as `tessera join CODE --stdio`");
  const line = await firstLine();
  if (!line)
    throw new ConfigError(
      "no code: give it as `tessera join CODE`, type it at the prompt, or pipe it as the first line of stdin",
    );
  return line;
}

/** One line typed without echo; Ctrl-C or Ctrl-D cancels. */
export function askHidden(prompt: string, what = "a code", max = 600): Promise<string> {
  const stdin = process.stdin;
  // Echo off before the prompt shows: a code typed the moment it appears must not be echoed either.
  stdin.setRawMode(true);
  process.stderr.write(prompt);
  stdin.resume();
  let typed = "";
  return new Promise<string>((resolve, reject) => {
    const done = (err?: Error) => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\r\n");
      if (err) reject(err);
      else resolve(typed.trim());
    };
    const onData = (chunk: Buffer) => {
      for (const b of chunk) {
        if (b === CTRL_C || b === CTRL_D) return done(new ConfigError(`cancelled before ${what} was given`));
        if (b === 0x0d || b === 0x0a) return done();
        if (BACKSPACE.includes(b)) typed = typed.slice(0, -1);
        // Room for the host's whole printed line (`tessera join HOST:PORT/CODE`), pasted as it is.
        else if (b >= 0x20 && typed.length < max) typed += String.fromCharCode(b);
      }
    };
    stdin.on("data", onData);
  });
}

/** The first line of stdin; whatever came after it is put back for the session (a piped shell script). */
export function firstLine(): Promise<string> {
  const stdin = process.stdin;
  let buf = Buffer.alloc(0);
  return new Promise((resolve) => {
    const finish = (line: string, rest?: Buffer) => {
      stdin.off("data", onData);
      stdin.off("end", onEnd);
      stdin.pause();
      if (rest?.length) stdin.unshift(rest);
      resolve(line.trim());
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl >= 0) finish(buf.subarray(0, nl).toString("utf8"), buf.subarray(nl + 1));
      else if (buf.length > 256) finish("");
    };
    const onEnd = () => finish(buf.toString("utf8"));
    stdin.on("data", onData);
    stdin.once("end", onEnd);
    stdin.resume();
  });
}
