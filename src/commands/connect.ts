// `tessera connect`: like join, but names the share and target directly instead of redeeming a code.
import { defineCommand } from "citty";
import { commandAfterDashes } from "../cli/command-runner.ts";
import { guestMode } from "../cli/guest-mode.ts";
import { runGuest } from "../cli/guest-run.ts";
import { osUser } from "../cli/os-user.ts";

export default defineCommand({
  meta: {
    name: "connect",
    description:
      "Ask a running share for access by id and target; forward a local port once approved (`-- CMD` and `--stdio` as for join)",
  },
  args: {
    "share-id": { type: "string", required: true, description: "Id of the share (from the host)" },
    target: {
      type: "string",
      required: true,
      description: "HOST:PORT on the host's side, one of the share's allowed targets",
    },
    reason: {
      type: "string",
      default: "",
      description: "Why you need access; shown to the host and kept in the audit log",
    },
    name: { type: "string", description: "Your name as the host sees it (default: your OS user)" },
    local: {
      type: "string",
      description:
        "Local HOST:PORT to listen on (default 127.0.0.1 and the target's port + 10000; any free port with a command)",
    },
    pool: {
      type: "string",
      description:
        "No effect (kept for one release): every connection now starts at once inside the session's one data channel",
    },
    stdio: {
      type: "boolean",
      description: "No local port: carry one stream over stdin/stdout (for ssh -o ProxyCommand); status goes to stderr",
    },
    "relay-only": { type: "boolean", description: "Offer no direct path: every stream goes through the coordinator" },
  },
  async run({ args, rawArgs }) {
    const mode = guestMode({
      local: args.local,
      stdio: args.stdio,
      command: commandAfterDashes(rawArgs),
    });
    await runGuest(
      { shareId: args["share-id"], target: args.target, name: args.name || osUser(), reason: args.reason },
      mode,
      { relayOnly: !!args["relay-only"] },
    );
  },
});
