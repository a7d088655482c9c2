// `tessera join CODE`: redeem a host's code, wait for their yes, then forward a local port (or run a command through it, or carry stdin/stdout).
import { defineCommand } from "citty";
import { ConfigError } from "../errors.ts";
import { commandAfterDashes } from "../cli/command-runner.ts";
import { readCode } from "../cli/code-input.ts";
import { guestMode } from "../cli/guest-mode.ts";
import { runGuest } from "../cli/guest-run.ts";
import { osUser } from "../cli/os-user.ts";
import { coordinatorFor, splitInvite } from "../cli/invite.ts";
import { logger } from "../log.ts";

const log = logger("join");

export default defineCommand({
  meta: {
    name: "join",
    description:
      "Ask the host for access with their code; once they approve, forward a local port (or run `-- CMD {host} {port}` through it, or carry stdin/stdout with --stdio)",
  },
  args: {
    code: {
      type: "positional",
      required: false,
      description:
        "The code the host gave you (XXXX-XXXX), or their invite line's HOST:PORT/XXXX-XXXX (no `link` needed); leave it out to type it unseen (or pipe it as stdin's first line), so `ps` never shows it",
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
    verify: {
      type: "boolean",
      description:
        "Print a short verification string once the code checks out; the host sees the same with `share --verify`",
    },
    "relay-only": {
      type: "boolean",
      description:
        "Offer no direct path: every stream goes through the coordinator (by default this machine's addresses are offered, signed, and the host's agent may dial them)",
    },
  },
  async run({ args, rawArgs }) {
    const command = commandAfterDashes(rawArgs);
    // citty folds the words after `--` into the positionals: a code counts only if it stands before `--`.
    const before = command ? rawArgs.slice(0, rawArgs.indexOf("--")) : rawArgs;
    const given = args.code !== undefined && before.includes(args.code) ? args.code : undefined;
    // A command owns the terminal and stdin once it runs: its code comes on the command line.
    if (command && given === undefined)
      throw new ConfigError("give the code before `--`: tessera join CODE -- CMD ARGS");
    const mode = guestMode({ local: args.local, stdio: args.stdio, command });
    // An invite (HOST:PORT/XXXX-XXXX) names its coordinator: no `link` needed.
    const invite = splitInvite(given ?? (await readCode(mode.kind === "stdio")));
    const via = invite.address ? await coordinatorFor(invite.address, (line) => log.info(line)) : undefined;
    await runGuest({ code: invite.code, name: args.name || osUser(), reason: args.reason }, mode, {
      via,
      verify: !!args.verify,
      relayOnly: !!args["relay-only"],
    });
  },
});
