// `tessera share`: offer one local port or a shell (embedded agent) or approve for a running agent; prints a code and prompts per request.
import { randomBytes } from "node:crypto";
import { defineCommand } from "citty";
import { ConfigError } from "../errors.ts";
import { logger } from "../log.ts";
import { Agent } from "../host/agent.ts";
import type { ControlClient } from "../wire/control-client.ts";
import { TargetPolicy } from "../host/policy.ts";
import { formatTarget } from "../wire/address.ts";
import { Approver } from "../cli/approver.ts";
import { AttachedApprover } from "../cli/attached-approver.ts";
import { OutageReport } from "../cli/outage.ts";
import { LiveView } from "../cli/live-view.ts";
import { ShellShare } from "../cli/shell-share.ts";
import { coordinatorAddress, homeDir, homeFile, readCa, readHostIdentity } from "../cli/home.ts";
import { KnownGuests } from "../host/known-guests.ts";
import { CodeKeeper } from "../host/code-keeper.ts";
import { YesBook } from "../host/yes-book.ts";
import { certInfo } from "../pki/index.ts";
import path from "node:path";
import { untilInterrupted } from "../cli/signals.ts";
import { osUser } from "../cli/ui.ts";
import { waitForCoordinator } from "../cli/coordinator-wait.ts";
import { checkTargetHost } from "../cli/target-host.ts";
import { VERSION } from "../version.ts";

const log = logger("share");

export default defineCommand({
  meta: {
    name: "share",
    description: "Share a local port or your shell: print a code, ask you about each guest, open access once you say y",
  },
  args: {
    port: { type: "string", description: "Local port to share (runs an embedded agent for exactly this target)" },
    host: { type: "string", default: "127.0.0.1", description: "Host of the target to share" },
    "share-id": { type: "string", description: "Approve requests for a running `tessera agent --share-id ID` instead" },
    target: {
      type: "string",
      description: "With --share-id: which of the agent's targets the code is for (default: its first)",
    },
    shell: {
      type: "boolean",
      description: "Share an interactive shell on this machine (a PTY a session, as your user) instead of a port",
    },
    command: {
      type: "string",
      description: "With --shell: what to run in the terminal (default: your login shell, as a login shell)",
    },
    "read-only": {
      type: "boolean",
      description: "With --shell: the guest only watches; you type in this terminal (implies --watch)",
    },
    watch: {
      type: "boolean",
      description: "With --shell: mirror the shared shell here and let you type too; Ctrl-] ends the session",
    },
    record: {
      type: "string",
      optionalValue: true,
      description: "With --shell: directory for asciicast recordings (default TESSERA_HOME/recordings)",
    },
    "no-record": { type: "boolean", description: "With --shell: do not record the session" },
    "allow-requests-by-id": {
      type: "boolean",
      description:
        "With --port or --shell: also let guests ask by this share's id (`tessera connect --share-id`), without a code; off by default",
    },
    verify: {
      type: "boolean",
      description:
        "Show a short verification string with each code request; the guest sees the same with `join --verify` (compare them on a call)",
    },
    "relay-only": {
      type: "boolean",
      description:
        "Never dial a guest directly: every stream goes through the coordinator (by default the agent dials the guest's signed, deny-listed hints, at most 8)",
    },
    "direct-listen": {
      type: "boolean",
      description:
        "Also listen (a random port, all interfaces) and offer this machine's addresses, signed, so a guest the agent cannot reach may reach it; off by default: the agent only dials out",
    },
  },
  async run({ args }) {
    const dial = { address: coordinatorAddress(), caPem: readCa(), ...readHostIdentity(), version: VERSION };
    const stop = untilInterrupted();
    await waitForCoordinator(dial.address, (line) => log.info(line));
    // Codes' secret halves live in this process only (and in files `tessera mcp` leaves here for it).
    const keeper = new CodeKeeper(certInfo(dial.certPem).spki, path.join(homeDir(), "code-secrets"));
    const known = KnownGuests.load(homeFile("known_guests.json"));
    // A yes given at this terminal opens one session of the embedded agent, once.
    const yes = new YesBook();
    const consent = { keeper, hostKeyPem: dial.keyPem, known, yes };
    const screen = { address: dial.address, verify: !!args.verify, known };
    let client: ControlClient;
    let shareId: string;
    let agent: Agent | undefined;
    let approver: Approver | undefined;
    let shell: ShellShare | undefined;
    let attached: AttachedApprover | undefined;
    if (args.shell && (args.port !== undefined || args["share-id"]))
      throw new ConfigError("--shell shares this machine's shell; leave out --port and --share-id");
    if (!args.shell && (args["read-only"] || args.watch || args.command !== undefined))
      throw new ConfigError("--read-only, --watch and --command go with --shell");
    if ((args["relay-only"] || args["direct-listen"]) && args["share-id"])
      throw new ConfigError(
        "--relay-only and --direct-listen are the agent's to set: start it with `tessera agent --share-id ID --relay-only` (or --direct-listen)",
      );
    if (args["relay-only"] && args["direct-listen"])
      throw new ConfigError("--relay-only turns the direct path off; leave out --direct-listen");
    if (args["allow-requests-by-id"] && args["share-id"])
      throw new ConfigError(
        "--allow-requests-by-id is the agent's to set: start it with `tessera agent --share-id ID --allow-requests-by-id`",
      );
    if (args.port !== undefined || args.shell) {
      let policy: TargetPolicy;
      if (args.shell) {
        shell = new ShellShare({
          command: args.command,
          readOnly: !!args["read-only"],
          watch: !!args.watch,
          record: args.record as string | boolean | undefined,
        });
        policy = new TargetPolicy([]);
      } else {
        const port = Number(args.port);
        if (!Number.isInteger(port) || port < 1 || port > 65535)
          throw new ConfigError(`--port must be 1-65535 (got "${args.port}")`);
        await checkTargetHost(args.host, (line) => log.warn(line));
        policy = new TargetPolicy([formatTarget(args.host, port)]);
      }
      shareId = `sh-${randomBytes(6).toString("hex")}`;
      let approverRef: Approver | undefined;
      const outage = new OutageReport("share");
      agent = new Agent(
        {
          ...dial,
          shareId,
          policy,
          approver: true,
          reconnect: true,
          shell: shell?.host,
          requestsById: !!args["allow-requests-by-id"],
          vouch: yes,
          receipts: true,
          relayOnly: !!args["relay-only"],
          directListen: !!args["direct-listen"],
        },
        {
          onDisconnected: (err, retry) => {
            if (retry === undefined) return stop.trigger(`lost the coordinator${err ? `: ${err.message}` : ""}`);
            approverRef?.pause();
            outage.retrying(
              err?.message,
              retry,
              "lost the coordinator; codes and approved sessions stay valid meanwhile",
            );
          },
          onConnected: (c) => {
            if (!approverRef) return;
            approverRef.rebind(c);
            client = c;
            shell?.rebind(c);
            outage.back("reconnected to the coordinator; the share is live again");
          },
          onStream: (sid, error) => error && log.warn(`session ${sid}: ${error}`),
        },
      );
      client = await agent.start();
      approver = approverRef = Approver.open(
        client,
        { ...consent, shareId, requestsById: !!args["allow-requests-by-id"] },
        screen,
        shell?.what,
      );
      log.info(
        `sharing ${shell ? `a shell as ${osUser()}${shell.recordDir ? `, recorded to ${shell.recordDir}` : ", not recorded"}` : policy.targets[0]} as ${shareId}`,
      );
      // What a guest passes to `tessera receipt verify --host-key` to check this host signed its yes
      // (kept short: the line fits 80 columns; the README says what it is for).
      log.info(`host key ${certInfo(dial.certPem).spki}`);
      if (!shell && !(await listening(args.host, Number(args.port)))) {
        log.warn(
          `nothing is listening on ${policy.targets[0]} right now: guests will be told their connections are refused until something is`,
        );
      }
      if (args["allow-requests-by-id"])
        log.info(
          `guests may also ask without a code: tessera connect --share-id ${shareId} --target ${shell ? "shell" : policy.targets[0]}`,
        );
    } else if (args["share-id"]) {
      shareId = args["share-id"];
      attached = new AttachedApprover(
        dial,
        shareId,
        (why) => stop.trigger(why),
        { keeper, hostKeyPem: dial.keyPem, known },
        screen,
        args.target,
      );
      await attached.start();
      client = attached.client;
      approver = attached.approver;
    } else {
      throw new ConfigError("say what to share: --port N (and --host), or --share-id ID of a running agent");
    }
    approver.start();
    shell?.bind(client, approver);
    await approver.mint(args.target);
    // A watched shell owns this terminal while attached: no panel under it.
    const view =
      args.watch || args["read-only"]
        ? undefined
        : new LiveView({
            shareId,
            client: () => attached?.client ?? client,
            approver,
            tty: !!process.stdin.isTTY && !!process.stderr.isTTY,
          });
    view?.start();
    const why = await stop.promise;
    view?.stop();
    attached?.stop();
    shell?.stop();
    approver.stop();
    if (agent) await agent.stop();
    else await (attached?.client ?? client).leave(shareId);
    if (why.startsWith("lost") || why.startsWith("stopped:")) {
      log.error(why);
      process.exitCode = 1;
    } else if (agent) log.info(`stopped sharing (${why}); every session of this share is closed`);
    else log.info(`stopped approving (${why}); the sessions approved here are closed, the agent keeps serving`);
  },
});

/** Whether something accepts connections at host:port now (a hint for the host, not a gate). */
async function listening(hostname: string, port: number): Promise<boolean> {
  try {
    const probe = await Bun.connect({ hostname, port, socket: { data() {} } });
    probe.end();
    return true;
  } catch {
    return false;
  }
}
