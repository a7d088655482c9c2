// Shared by join and connect: ask, wait with a spinner, then forward a local port, run a command
// through it, or carry one stream over stdin/stdout, until the session ends.
import path from "node:path";
import { ConfigError } from "../errors.ts";
import { logger } from "../log.ts";
import { Guest, type AccessRequest, type Approved } from "../guest/guest.ts";
import { SHELL_TARGET } from "../wire/protocol.ts";
import { describeScope } from "../wire/scope.ts";
import { parseTarget } from "../wire/address.ts";
import { runCommand } from "./command-runner.ts";
import { OutageReport } from "./outage.ts";
import { localAddress, type GuestMode } from "./guest-mode.ts";
import { coordinatorAddress, homeDir, readCa, writePublic } from "./home.ts";
import { untilInterrupted } from "./signals.ts";
import { runShellGuest } from "./shell-guest.ts";
import { loadGuestIdentity } from "./guest-identity.ts";
import { carryStdio } from "./stdio-carrier.ts";
import { HostWait } from "./host-wait.ts";
import { checkReason, findCommand, isLoopback } from "./guest-checks.ts";
import { waitForCoordinator } from "./coordinator-wait.ts";
import { changedCa, type InviteCoordinator } from "./invite.ts";
import { PathLine } from "./path-line.ts";
import { VERSION } from "../version.ts";

const log = logger("join");

/** via: the coordinator an invite named (else the linked one); verify: print the string to compare with the host. */
export async function runGuest(
  req: AccessRequest,
  mode: GuestMode,
  o: { via?: InviteCoordinator; verify?: boolean; relayOnly?: boolean } = {},
): Promise<void> {
  checkReason(req.reason);
  // A command that cannot run is said now, before the host is asked and the code is spent.
  if (mode.kind === "command" && !findCommand(mode.argv[0]!)) {
    log.error(
      `${mode.argv[0]}: command not found (not on PATH, or not executable); nothing was sent and the code is still good`,
    );
    process.exitCode = 127;
    return;
  }
  const stop = untilInterrupted();
  const outage = new OutageReport("join");
  const via: InviteCoordinator = o.via ?? { address: coordinatorAddress(), caPem: readCa() };
  // Before dialling: an unusable identity file is reported before anyone is asked.
  const identityKeyPem = await loadGuestIdentity();
  await waitForCoordinator(via.address, (line) => log.info(line));
  const wait = new HostWait("code" in req);
  const pathLine = new PathLine((line) => log.info(line), !!o.relayOnly);
  const guest = await Guest.connect(
    { ...via, version: VERSION },
    {
      onPending: (p) => {
        // The share's kind is known now, before the host is shown anything: a shell cannot be forwarded.
        if (p.target === SHELL_TARGET && (mode.kind !== "forward" || mode.local))
          return wait.refuse(
            "this share is a shell: join it without --local, --stdio or `-- COMMAND` (pipe commands into join's stdin instead); the host was not asked",
            () => void guest.close(),
          );
        wait.pending();
      },
      onCodeConfirmed: (verify) => {
        log.info("the host proved it made this code: the tunnel will accept only its key");
        if (o.verify) log.info(`verify: ${verify}   (the host sees the same string with share --verify; compare them)`);
        wait.confirmed();
      },
      onStreamError: (m) => log.warn(m),
      onRetry: (reason, retry) => log.warn(`${reason} (again in ${(retry / 1000).toFixed(1)}s)`),
      onDetached: (reason, retry) =>
        outage.retrying(
          reason,
          retry,
          "lost the connection to the coordinator; open connections were closed, the session is kept",
        ),
      onResumed: (f) =>
        outage.back(
          `session ${f.sessionId} resumed${f.restarted ? " after the coordinator restarted" : ""}: new connections work${f.hostOnline ? "" : " once the host's agent is back (it is still reconnecting)"}`,
        ),
      onClosed: (reason) => stop.trigger(`session ended: ${reason}`),
      onPath: (p) => pathLine.report(p),
    },
    { relayOnly: o.relayOnly },
  ).catch((err) => {
    throw changedCa(via, err);
  });
  // A coordinator seen for the first time is kept only now: the guest's own TLS handshake with it held.
  via.keep?.();
  // A local port named explicitly is taken before the host is asked: in use or not ours, the answer
  // comes now, not after the host's yes and the code are spent. (Connections before approval are refused.)
  const early = mode.kind !== "stdio" && mode.local !== undefined ? localAddress(mode.local, 0) : undefined;
  if (early && !isLoopback(early.host))
    log.warn(
      `--local ${mode.kind !== "stdio" ? mode.local : ""} listens beyond this machine: every machine that can reach ${early.host === "0.0.0.0" || early.host === "::" ? "this one (on any of its networks)" : early.host} can then reach the host's service through it; use 127.0.0.1 unless that is what you mean`,
    );
  let bound: { host: string; port: number } | undefined;
  if (early && early.port !== 0)
    bound = await guest.listen(early.host, early.port).catch(async (err) => {
      await guest.close();
      throw err;
    });
  const approved = await awaitApproval(guest, { ...req, identityKeyPem }, stop.promise, wait);
  if (approved.receipt) {
    // The host's signed yes, kept: `tessera receipt verify FILE` checks it offline, whatever the coordinator says.
    const file = path.join(homeDir(), "receipts", `${approved.sessionId}.json`);
    writePublic(file, `${JSON.stringify(approved.receipt, null, 2)}\n`);
    log.info(`the host's signed receipt for this session: ${file}`);
  }
  const scope = describeScope(approved.scope);
  log.info(
    `session ${approved.sessionId} approved (idle timeout ${Math.round(approved.idleTimeoutSec / 60)} min${scope ? `; the host allows it ${scope}` : ""})`,
  );
  if (approved.target === SHELL_TARGET) return runShellGuest(guest, approved, stop.promise, mode);
  if (mode.kind === "stdio") {
    process.exitCode = await carryStdio(guest, stop.promise);
    return;
  }
  if (!bound) {
    // A command gets any free port ({port} tells it which); a plain forward gets a predictable one.
    const want =
      early ??
      localAddress(
        mode.kind === "command" ? "127.0.0.1:0" : "127.0.0.1",
        defaultLocalPort(parseTarget(approved.target).port),
      );
    bound = await guest
      .listen(want.host, want.port)
      .catch(async (err) => {
        // The predictable port is only a default: when it is taken, any free port will do.
        if (early || want.port === 0) throw err;
        const any = await guest.listen(want.host, 0);
        log.warn(`${want.host}:${want.port} is in use; forwarding from ${any.host}:${any.port} instead`);
        return any;
      })
      .catch(async (err) => {
        await guest.close();
        throw err;
      });
  }
  if (mode.kind === "command") {
    // The command owns stdout (it may be piped to a file), so our status goes to stderr.
    log.info(`forwarding ${bound.host}:${bound.port} -> ${approved.target}`);
    const status = await runCommand(mode.argv, bound, stop.promise, stop.release);
    await guest.close();
    process.exitCode = status;
    return;
  }
  console.log(`forwarding ${bound.host}:${bound.port} -> ${approved.target}`);
  log.info("Ctrl-C ends the session");
  const why = await stop.promise;
  await guest.close();
  if (why.startsWith("session ended")) {
    log.warn(why);
    process.exitCode = 1;
  } else log.info("session closed");
}

/** Sends the request and waits for the host's answer, showing a spinner; Ctrl-C cancels. */
async function awaitApproval(
  guest: Guest,
  req: AccessRequest,
  stop: Promise<string>,
  wait: HostWait,
): Promise<Approved> {
  try {
    return await Promise.race([
      guest.request(req).catch((err) => {
        if (wait.refused) throw new ConfigError(wait.refused);
        throw err;
      }),
      stop.then((why): never => {
        void guest.close();
        // What the cancel cost: a code is single use, and once asked the host saw the request withdrawn.
        throw new ConfigError(
          "code" in req
            ? `cancelled (${why}) before the host answered; the code is used up: ask the host for a new one`
            : `cancelled (${why}) before the host answered${wait.asked ? "; the host sees the request withdrawn" : ""}`,
        );
      }),
    ]);
  } finally {
    wait.stop();
  }
}

function defaultLocalPort(targetPort: number): number {
  return targetPort + 10000 <= 65535 ? targetPort + 10000 : targetPort;
}
