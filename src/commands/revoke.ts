// `tessera revoke SESSION_ID`: operator ends a session now, cutting its live streams.
import fs from "node:fs";
import { rootCertificates } from "node:tls";
import { defineCommand } from "citty";
import { TesseraError } from "../errors.ts";
import { splitAddress } from "../wire/address.ts";
import { coordinatorAddress, homeFile, readCa, readConfig, readRequired } from "../cli/home.ts";

export default defineCommand({
  meta: { name: "revoke", description: "End a session at once (needs the operator token: `tessera token HEX`)" },
  args: {
    session: { type: "positional", required: true, description: "Session id (from the audit log or the host's terminal)" },
    url: { type: "string", description: "Coordinator HTTP base URL (default http://COORDINATOR-HOST:8080)" },
  },
  async run({ args }) {
    const token = readRequired(homeFile("operator-token"), "no operator token on this machine: run `tessera token HEX` first").trim();
    const base = args.url || readConfig().http || `http://${splitAddress(coordinatorAddress()).host}:8080`;
    const url = `${base.replace(/\/$/, "")}/s/${encodeURIComponent(args.session)}/revoke`;
    // An HTTPS endpoint may use a certificate from the deployment's CA or from a public one: trust both.
    const tls = url.startsWith("https:") && fs.existsSync(homeFile("ca.crt")) ? { tls: { ca: [...rootCertificates, readCa()] } } : {};
    let res: Response;
    try {
      res = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${token}` }, ...tls });
    } catch (err) {
      throw new TesseraError("connect", `cannot reach ${base}: ${(err as Error).message}`);
    }
    const body = (await res.text()).trim();
    if (!res.ok) throw new TesseraError("revoke", `revoke refused (${res.status}): ${body}`);
    console.log(`revoked ${args.session}`);
  },
});
