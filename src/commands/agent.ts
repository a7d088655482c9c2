// `tessera agent`: long-running host service for a share; dials out only and reaches only --allow targets.
import { defineCommand } from "citty";
import { ConfigError, errorMessage } from "../errors.ts";
import { logger, setLogFormat } from "../log.ts";
import { Agent, refusedForGood } from "../host/agent.ts";
import { TargetPolicy } from "../host/policy.ts";
import { coordinatorAddress, readCa, readHostIdentity } from "../cli/home.ts";
import { untilInterrupted } from "../cli/signals.ts";
import { VERSION } from "../version.ts";

const log = logger("agent");
/** EX_CONFIG: this machine must be enrolled again (or the share id changed); deploy/systemd/tessera-agent@.service does not restart on it. */
const EXIT_REFUSED_FOR_GOOD = 78;

export default defineCommand({
  meta: { name: "agent", description: "Serve a share in the background: approved guests reach only the --allow targets" },
  args: {
    "share-id": { type: "string", required: true, description: "Id of the share this agent serves (approve with `tessera share --share-id ID`)" },
    allow: { type: "string", required: true, description: "HOST:PORT guests may reach; repeat for more" },
    "log-format": { type: "string", description: "pretty or json (one JSON object a line on stderr); default $TESSERA_LOG_FORMAT or pretty" },
  },
  async run({ args }) {
    setLogFormat(args["log-format"]);
    const allow = [args.allow].flat().flatMap((a) => String(a).split(",")).filter(Boolean);
    let policy: TargetPolicy;
    try {
      policy = new TargetPolicy(allow);
    } catch (err) {
      throw new ConfigError(`--allow: ${errorMessage(err)}`);
    }
    const stop = untilInterrupted();
    const agent = new Agent({ address: coordinatorAddress(), caPem: readCa(), ...readHostIdentity(), version: VERSION, shareId: args["share-id"], policy, approver: false, reconnect: true }, {
      onConnected: () => log.info(`serving share ${args["share-id"]}: ${policy.targets.join(", ")}`),
      onDisconnected: (err, retry) => {
        if (retry !== undefined) log.warn(`disconnected${err ? ` (${err.message})` : ""}; reconnecting in ${(retry / 1000).toFixed(1)}s`);
        else if (err) stop.trigger(`giving up: ${err.message}`);
      },
      onStream: (sid, error) => error && log.warn(`session ${sid}: ${error}`),
    });
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
