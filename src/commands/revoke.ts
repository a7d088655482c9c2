// `tessera revoke SESSION_ID`: operator ends a session now, cutting its live streams.
import { defineCommand } from "citty";
import { TesseraError } from "../errors.ts";
import { operatorFetch } from "../cli/operator-http.ts";

export default defineCommand({
  meta: { name: "revoke", description: "End a session at once (needs the operator token: `tessera token HEX`)" },
  args: {
    session: {
      type: "positional",
      required: true,
      description: "Session id (from the audit log or the host's terminal)",
    },
    url: {
      type: "string",
      description:
        "Coordinator HTTP base URL; plain http:// only to this machine (default https://COORDINATOR-HOST:8080, then http on loopback)",
    },
  },
  async run({ args }) {
    const res = await operatorFetch(args.url, `/s/${encodeURIComponent(args.session)}/revoke`, { method: "POST" });
    const body = (await res.text()).trim();
    if (!res.ok) throw new TesseraError("revoke", `revoke refused (${res.status}): ${body}`);
    console.log(`revoked ${args.session}`);
  },
});
