// `tessera join CODE`: redeem a host's code, wait for their yes, then forward a local port.
import { defineCommand } from "citty";
import { runGuest } from "../cli/guest-run.ts";
import { osUser } from "../cli/ui.ts";

export default defineCommand({
  meta: { name: "join", description: "Ask the host for access with their code; once they approve, forward a local port to their target" },
  args: {
    code: { type: "positional", required: true, description: "The code the host gave you (XXXX-XXXX)" },
    reason: { type: "string", default: "", description: "Why you need access; shown to the host and kept in the audit log" },
    name: { type: "string", description: "Your name as the host sees it (default: your OS user)" },
    local: { type: "string", description: "Local HOST:PORT to listen on (default 127.0.0.1 and the target's port + 10000)" },
  },
  async run({ args }) {
    await runGuest({ code: args.code, name: args.name || osUser(), reason: args.reason }, args.local);
  },
});
