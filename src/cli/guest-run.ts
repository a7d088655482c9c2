// Shared by join and connect: ask, wait with a spinner, then forward a local port until the session ends.
import { ConfigError } from "../errors.ts";
import { logger } from "../log.ts";
import { splitAddress } from "../relay/client.ts";
import { Guest, type AccessRequest } from "../relay/guest.ts";
import { parseTarget, SHELL_TARGET } from "../relay/protocol.ts";
import { coordinatorAddress, readCa } from "./home.ts";
import { untilInterrupted } from "./signals.ts";
import { runShellGuest } from "./shell-guest.ts";
import { spinner } from "./ui.ts";
import { VERSION } from "../version.ts";

const log = logger("join");

export async function runGuest(req: AccessRequest, local: string | undefined): Promise<void> {
  const stop = untilInterrupted();
  const guest = await Guest.connect({ address: coordinatorAddress(), caPem: readCa(), version: VERSION }, {
    onStreamError: (m) => log.warn(m),
    onDetached: (m, retry) => log.warn(`${m}; resuming the session in ${(retry / 1000).toFixed(1)}s`),
    onResumed: (f) => log.info(`session ${f.sessionId} resumed${f.restarted ? " (the coordinator had restarted; streams open before it ended)" : ""}${f.hostOnline ? "" : "; the host's agent is still reconnecting"}`),
    onClosed: (reason) => stop.trigger(`session ended: ${reason}`),
  });
  const spin = spinner("waiting for the host to approve... (Ctrl-C to cancel)");
  let approved;
  try {
    approved = await Promise.race([
      guest.request(req),
      stop.promise.then((why): never => {
        guest.close();
        throw new ConfigError(`cancelled (${why}) before the host answered`);
      }),
    ]);
  } finally {
    spin.stop();
  }
  if (approved.target === SHELL_TARGET) return runShellGuest(guest, approved, stop.promise);
  const target = parseTarget(approved.target);
  const want = splitAddress(local ?? "127.0.0.1", defaultLocalPort(target.port), true);
  let bound: { host: string; port: number };
  try {
    bound = await guest.listen(want.host, want.port);
  } catch (err) {
    guest.close();
    throw err;
  }
  console.log(`forwarding ${bound.host}:${bound.port} -> ${approved.target}`);
  log.info(`session ${approved.sessionId} approved; Ctrl-C ends it (idle timeout ${Math.round(approved.idleTimeoutSec / 60)} min)`);
  const why = await stop.promise;
  if (why.startsWith("session ended")) {
    log.warn(why);
    guest.close();
    process.exitCode = 1;
  } else {
    guest.close();
    log.info("session closed");
  }
}

function defaultLocalPort(targetPort: number): number {
  return targetPort + 10000 <= 65535 ? targetPort + 10000 : targetPort;
}
