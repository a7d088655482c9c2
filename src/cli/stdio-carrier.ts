// `--stdio`: the session's one stream carried over this process's stdin/stdout (an ssh ProxyCommand),
// with no local listener. Everything the user should read goes to stderr; stdout carries only the stream.
import { Duplex, type Readable, type Writable } from "node:stream";
import { logger } from "../log.ts";
import type { Guest } from "../guest/guest.ts";

const log = logger("join");

/**
 * Joins a readable and a writable into one duplex that keeps half-close: end of input ends only the
 * way out (the remote side still answers), and the remote side's end ends only our output.
 */
export function stdioDuplex(input: Readable, output: Writable): Duplex {
  const duplex = new Duplex({
    allowHalfOpen: true,
    // Pipe reads come in ~32-64 KiB; a small buffer would pause and resume stdin on nearly every chunk.
    readableHighWaterMark: 1024 * 1024,
    read() {
      input.resume();
    },
    write(chunk, _enc, done) {
      output.write(chunk, (err) => done(err ?? undefined));
    },
    final(done) {
      // Closing stdout tells the reader (ssh, a pipe) the remote side is done; flushes first.
      output.end(() => done());
    },
    destroy(err, done) {
      input.pause();
      done(err);
    },
  });
  input.on("data", (chunk: Buffer) => {
    if (!duplex.push(chunk)) input.pause();
  });
  input.once("end", () => duplex.push(null));
  input.once("error", (err) => duplex.destroy(err));
  output.once("error", (err) => duplex.destroy(err));
  input.pause();
  return duplex;
}

/**
 * Carries one stream over stdin/stdout until it is over or `stop` fires (Ctrl-C, ssh hanging up, the
 * session ending). Resolves with the exit status: 0 when the stream or the user ended it, 1 when cut.
 */
export async function carryStdio(guest: Guest, stop: Promise<string>): Promise<number> {
  const io = stdioDuplex(process.stdin, process.stdout);
  const outcome = await Promise.race([
    guest.carry(io).then(async (clean) => {
      if (clean) return { clean, why: "the stream ended" };
      // A cut stream is often the session ending: its reason may be a moment behind on the control connection.
      const why = await Promise.race([
        stop,
        new Promise<string>((r) => setTimeout(() => r("the stream was cut"), 500)),
      ]);
      return { clean: false, why };
    }),
    stop.then((why) => ({ clean: !why.startsWith("session ended"), why })),
  ]);
  io.destroy();
  await guest.close();
  if (outcome.clean) {
    log.info(`session closed (${outcome.why})`);
    return 0;
  }
  log.warn(outcome.why);
  return 1;
}
