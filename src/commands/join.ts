// `tessera join CODE`: redeem a host's code, wait for their yes, then forward a local port (or run a command through it, or carry stdin/stdout).
import { defineCommand } from "citty";
import { ConfigError } from "../errors.ts";
import { commandAfterDashes } from "../cli/command-runner.ts";
import { guestMode } from "../cli/guest-mode.ts";
import { runGuest } from "../cli/guest-run.ts";
import { osUser } from "../cli/os-user.ts";

export default defineCommand({
  meta: { name: "join", description: "Ask the host for access with their code; once they approve, forward a local port (or run `-- CMD {host} {port}` through it, or carry stdin/stdout with --stdio)" },
  args: {
    code: { type: "positional", required: true, description: "The code the host gave you (XXXX-XXXX)" },
    reason: { type: "string", default: "", description: "Why you need access; shown to the host and kept in the audit log" },
    name: { type: "string", description: "Your name as the host sees it (default: your OS user)" },
    local: { type: "string", description: "Local HOST:PORT to listen on (default 127.0.0.1 and the target's port + 10000; any free port with a command)" },
    stdio: { type: "boolean", description: "No local port: carry one stream over stdin/stdout (for ssh -o ProxyCommand); status goes to stderr" },
  },
  async run({ args, rawArgs }) {
    const command = commandAfterDashes(rawArgs);
    // citty folds the words after `--` into the positionals, so a missing code would be taken from the command.
    if (command && !rawArgs.slice(0, rawArgs.indexOf("--")).includes(args.code)) throw new ConfigError("give the code before `--`: tessera join CODE -- CMD ARGS");
    const mode = guestMode({ local: args.local, stdio: args.stdio, command });
    await runGuest({ code: args.code, name: args.name || osUser(), reason: args.reason }, mode);
  },
});
