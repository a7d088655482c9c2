// `tessera agent`: long-running host service for a share; dials out only and reaches only --allow targets.
import { defineCommand } from "citty";
import { ConfigError, errorMessage } from "../errors.ts";
import { logger, setLogFormat, stampLines } from "../log.ts";
import { Agent } from "../host/agent.ts";
import { TargetPolicy } from "../host/policy.ts";
import { coordinatorAddress, readCa, readHostIdentity } from "../cli/home.ts";
import { repeatedValues } from "../cli/flags.ts";
import { OutageReport } from "../cli/outage.ts";
import { untilInterrupted } from "../cli/signals.ts";
import { VERSION } from "../version.ts";

const log = logger("agent");

export default defineCommand({
  meta: { name: "agent", description: "Serve a share in the background: approved guests reach only the --allow targets" },
  args: {
    "share-id": { type: "string", required: true, description: "Id of the share this agent serves (approve with `tessera share --share-id ID`)" },
    allow: { type: "string", required: true, description: "HOST:PORT guests may reach; repeat the flag (or separate with commas) for more" },
    "log-format": { type: "string", description: "pretty or json (one JSON object a line on stderr); default $TESSERA_LOG_FORMAT or pretty" },
  },
  async run({ args, rawArgs }) {
    setLogFormat(args["log-format"]);
    stampLines(true);
    // citty keeps only the last of a repeated flag; every --allow counts.
    const allow = repeatedValues(rawArgs, "allow").flatMap((a) => a.split(",")).filter(Boolean);
    let policy: TargetPolicy;
    try {
      policy = new TargetPolicy(allow);
    } catch (err) {
      throw new ConfigError(`--allow: ${errorMessage(err)}`);
    }
    const stop = untilInterrupted();
    const outage = new OutageReport("agent");
    const agent = new Agent({ address: coordinatorAddress(), caPem: readCa(), ...readHostIdentity(), version: VERSION, shareId: args["share-id"], policy, approver: false, reconnect: true }, {
      onConnected: () => {
        outage.back("reconnected to the coordinator");
        log.info(`serving share ${args["share-id"]}: ${policy.targets.join(", ")}`);
      },
      onDisconnected: (err, retry) => {
        if (retry !== undefined) outage.retrying(err?.message, retry, "lost the coordinator");
        else if (err) stop.trigger(`giving up: ${err.message}`);
      },
      onStream: (sid, error) => error && log.warn(`session ${sid}: ${error}`),
    });
    await agent.start();
    await stop.promise;
    await agent.stop();
  },
});
