// `join CODE -- CMD ARGS`: run one client against the local end of the tunnel and let its life be the session's.
import os from "node:os";
import type { Subprocess } from "bun";
import { ConfigError } from "../errors.ts";
import { logger } from "../log.ts";

const log = logger("join");
/** How long a command may take to exit after being told the session is over, before it is killed. */
const GRACE_MS = 5000;

/** The words after the first `--`, or undefined when there is none (citty folds them into positionals). */
export function commandAfterDashes(rawArgs: string[]): string[] | undefined {
  const i = rawArgs.indexOf("--");
  if (i < 0) return undefined;
  const argv = rawArgs.slice(i + 1);
  if (argv.length === 0)
    throw new ConfigError("nothing to run after `--`: give a command, e.g. `-- psql -h {host} -p {port}`");
  return argv;
}

/** Replaces every {host} and {port} in each word with the local end of the tunnel. */
export function substitute(argv: string[], at: { host: string; port: number }): string[] {
  return argv.map((a) => a.replaceAll("{host}", at.host).replaceAll("{port}", String(at.port)));
}

/** An exit status the shell's way: the code, 128 + the number of the signal that killed it, or 1 when neither is known. */
export function exitStatus(exit: { code: number | null; signal: string | null }): number {
  if (exit.code !== null) return exit.code;
  const n = exit.signal ? (os.constants.signals as Record<string, number>)[exit.signal] : undefined;
  return n ? 128 + n : 1;
}

/**
 * Runs the command with the terminal it was started from until it exits, or until `sessionOver` fires,
 * in which case it is sent SIGTERM (then SIGKILL after a grace period). Like system(3), Ctrl-C is the
 * command's to handle (psql cancels a query, it does not end the session); SIGTERM and SIGHUP sent to
 * tessera are passed on to the command. `releaseSignals` drops the caller's own signal handlers once
 * ours are in place (never a moment without one, or a signal would kill tessera outright).
 * Resolves with the exit status tessera should end with.
 */
export async function runCommand(
  argv: string[],
  at: { host: string; port: number },
  sessionOver: Promise<string>,
  releaseSignals: () => void,
): Promise<number> {
  const words = substitute(argv, at);
  let proc: Subprocess | undefined;
  const ignore = () => {};
  const onTerm = () => proc?.kill("SIGTERM");
  const onHup = () => proc?.kill("SIGHUP");
  process.on("SIGINT", ignore);
  process.on("SIGTERM", onTerm);
  process.on("SIGHUP", onHup);
  releaseSignals();
  try {
    try {
      proc = Bun.spawn(words, {
        stdio: ["inherit", "inherit", "inherit"],
        env: { ...process.env, TESSERA_HOST: at.host, TESSERA_PORT: String(at.port) },
      });
    } catch (err) {
      // The shell's convention: 127 when the command cannot be found, 126 when it cannot be run.
      const missing = (err as { code?: string }).code === "ENOENT";
      log.error(
        missing ? `cannot run "${words[0]}": command not found` : `cannot run "${words[0]}": ${(err as Error).message}`,
      );
      return missing ? 127 : 126;
    }
    log.info(`running ${words[0]} (pid ${proc.pid}); the session ends when it exits`);
    const running = proc;
    const first = await Promise.race([running.exited.then(() => undefined), sessionOver]);
    if (first === undefined)
      return exitStatus({
        code: running.exitCode,
        signal: running.signalCode === null ? null : String(running.signalCode),
      });
    log.warn(`${first}; stopping ${words[0]}`);
    running.kill("SIGTERM");
    const t = setTimeout(() => running.kill("SIGKILL"), GRACE_MS);
    await running.exited;
    clearTimeout(t);
    // The command did not finish its work: the session was taken away under it.
    return 1;
  } finally {
    process.off("SIGINT", ignore);
    process.off("SIGTERM", onTerm);
    process.off("SIGHUP", onHup);
  }
}
