// `tessera connect`: like join, but names the share and target directly instead of redeeming a code.
import { defineCommand } from "citty";
import { runGuest } from "../cli/guest-run.ts";
import { osUser } from "../cli/ui.ts";

export default defineCommand({
  meta: { name: "connect", description: "Ask a running share for access by id and target; forward a local port once approved" },
  args: {
    "share-id": { type: "string", required: true, description: "Id of the share (from the host)" },
    target: { type: "string", required: true, description: "HOST:PORT on the host's side, one of the share's allowed targets" },
    reason: { type: "string", default: "", description: "Why you need access; shown to the host and kept in the audit log" },
    name: { type: "string", description: "Your name as the host sees it (default: your OS user)" },
    local: { type: "string", description: "Local HOST:PORT to listen on (default 127.0.0.1 and the target's port + 10000)" },
  },
  async run({ args }) {
    await runGuest({ shareId: args["share-id"], target: args.target, name: args.name || osUser(), reason: args.reason }, args.local);
  },
});
