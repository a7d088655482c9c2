// `tessera agent`: long-running host service for a share; dials out only and reaches only --allow targets.
import { defineCommand } from "citty";
import { ConfigError, errorMessage } from "../errors.ts";
import { logger, setLogFormat, stampLines } from "../log.ts";
import { Agent, refusedForGood } from "../host/agent.ts";
import { TargetPolicy } from "../host/policy.ts";
import { ApproverBook } from "../host/approver-book.ts";
import { coordinatorAddress, homeFile, readCa, readHostIdentity } from "../cli/home.ts";
import { repeatedValues } from "../cli/flags.ts";
import { OutageReport } from "../cli/outage.ts";
import { untilInterrupted } from "../cli/signals.ts";
import { parseDuration } from "../cli/duration.ts";
import { VERSION } from "../version.ts";

const log = logger("agent");
/** EX_CONFIG: this machine must be enrolled again (or the share id changed); deploy/systemd/tessera-agent@.service does not restart on it. */
const EXIT_REFUSED_FOR_GOOD = 78;

export default defineCommand({
  meta: {
    name: "agent",
    description: "Serve a share in the background: approved guests reach only the --allow targets",
  },
  args: {
    "share-id": {
      type: "string",
      required: true,
      description: "Id of the share this agent serves (approve with `tessera share --share-id ID`)",
    },
    allow: {
      type: "string",
      required: true,
      description: "HOST:PORT guests may reach; repeat the flag (or separate with commas) for more",
    },
    "stream-setup-timeout": {
      type: "string",
      default: "30s",
      description:
        "Drop a session's data channel whose guest has not completed the end-to-end TLS within this time; keep it above the coordinator's --stream-token-ttl",
    },
    "allow-requests-by-id": {
      type: "boolean",
      description:
        "Let guests ask by share id (`tessera connect --share-id`) without a code; off by default, as anyone who knows the id could then prompt you",
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
    "log-format": {
      type: "string",
      description: "pretty or json (one JSON object a line on stderr); default $TESSERA_LOG_FORMAT or pretty",
    },
  },
  async run({ args, rawArgs }) {
    setLogFormat(args["log-format"]);
    stampLines(true);
    // citty keeps only the last of a repeated flag; every --allow counts.
    const allow = repeatedValues(rawArgs, "allow")
      .flatMap((a) => a.split(","))
      .filter(Boolean);
    let policy: TargetPolicy;
    try {
      policy = new TargetPolicy(allow);
    } catch (err) {
      throw new ConfigError(`--allow: ${errorMessage(err)}`);
    }
    if (args["relay-only"] && args["direct-listen"])
      throw new ConfigError("--relay-only turns the direct path off; leave out --direct-listen");
    // The share id names a file in TESSERA_HOME (the receipts this agent served): the protocol's id rule, checked here.
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(args["share-id"]) || /^\.+$/.test(args["share-id"]))
      throw new ConfigError("--share-id must be 1-64 letters, digits, '.', '_' or '-'");
    const streamSetupTimeoutMs = parseDuration(args["stream-setup-timeout"], "stream-setup-timeout");
    const stop = untilInterrupted();
    const outage = new OutageReport("agent");
    const agent = new Agent(
      {
        address: coordinatorAddress(),
        caPem: readCa(),
        ...readHostIdentity(),
        version: VERSION,
        shareId: args["share-id"],
        policy,
        approver: false,
        reconnect: true,
        streamSetupTimeoutMs,
        requestsById: !!args["allow-requests-by-id"],
        receipts: true,
        // Receipts signed by an approver `tessera approvers` keeps (and not one it removed) count as the host's.
        approvers: new ApproverBook(homeFile("approvers.json")),
        // Each receipt opens one session, also across this agent's restarts.
        usedReceipts: homeFile(`used-receipts-${args["share-id"]}.jsonl`),
        relayOnly: !!args["relay-only"],
        directListen: !!args["direct-listen"],
      },
      {
        onConnected: () => {
          outage.back("reconnected to the coordinator");
          log.info(`serving share ${args["share-id"]}: ${policy.targets.join(", ")}`);
        },
        onDisconnected: (err, retry) => {
          if (retry !== undefined) outage.retrying(err?.message, retry, "lost the coordinator");
          else if (err) stop.trigger(`giving up: ${err.message}`);
        },
        onStream: (sid, error) => error && log.warn(`session ${sid}: ${error}`),
      },
    );
    try {
      await agent.start();
    } catch (err) {
      if (!refusedForGood(err as Error)) throw err;
      stop.trigger(`giving up: ${errorMessage(err)}`);
    }
    const why = await stop.promise;
    await agent.stop();
    // A refusal no reconnect can fix (host removed, share taken): a status the service manager does not restart on.
    if (why.startsWith("giving up")) {
      log.error(why);
      process.exitCode = EXIT_REFUSED_FOR_GOOD;
    }
  },
});
