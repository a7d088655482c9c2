// `tessera admin`: the operator's view and controls over the coordinator's HTTP port (needs the operator token).
import os from "node:os";
import { defineCommand } from "citty";
import { ConfigError } from "../errors.ts";
import { operatorJson } from "../cli/operator-http.ts";
import {
  HostsAnswer,
  RemovedAnswer,
  SessionsAnswer,
  TokenAnswer,
  checkAnswer,
  hostsTable,
  sessionsTable,
} from "../cli/admin-view.ts";
import { escapeUnsafe, quoteText, safeJson, SHOW_NAME_MAX } from "../wire/untrusted-text.ts";
import { parseDuration } from "../cli/duration.ts";
import { osUser } from "../cli/os-user.ts";

const url = {
  type: "string",
  description:
    "Coordinator HTTP base URL; plain http:// only to this machine (default https://COORDINATOR-HOST:8080, then http on loopback)",
} as const;
const json = { type: "boolean", description: "Print the coordinator's JSON answer instead of a table" } as const;

/** Sent with every change, so the audit log says which operator asked (declared by this client, not proven). */
function operator(): string {
  return `${osUser()}@${os.hostname()}`.slice(0, 128);
}

function post(body: unknown): RequestInit {
  return {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...(body as object), operator: operator() }),
  };
}

/**
 * --json prints the coordinator's answer as it came (once it has been checked), with every character a
 * terminal would act on written as a JSON escape (same value, nothing raw); else the table.
 */
function print(asJson: boolean | undefined, raw: unknown, table: () => string): void {
  process.stdout.write(asJson ? `${safeJson(raw)}\n` : table());
}

const sessions = defineCommand({
  meta: {
    name: "sessions",
    description: "List live sessions: host, guest and address, target, age, idle time, streams, bytes each way",
  },
  args: { url, json },
  async run({ args }) {
    const raw = await operatorJson(args.url, "/admin/sessions");
    const answer = checkAnswer(SessionsAnswer, raw, "sessions");
    print(args.json, raw, () => sessionsTable(answer.sessions));
  },
});

const listHosts = defineCommand({
  meta: { name: "list", description: "List enrolled hosts: name, key fingerprint, enrolled, last seen, live shares" },
  args: { url, json, all: { type: "boolean", description: "Include removed hosts" } },
  async run({ args }) {
    const raw = await operatorJson(args.url, `/admin/hosts${args.all ? "?all=1" : ""}`);
    const answer = checkAnswer(HostsAnswer, raw, "hosts");
    print(args.json, raw, () => hostsTable(answer.hosts));
  },
});

const removeHost = defineCommand({
  meta: {
    name: "remove",
    description:
      "Remove a host: its certificate is refused from now on, its shares close and their sessions end at once",
  },
  args: {
    host: {
      type: "positional",
      required: true,
      description: "Host name, or its key fingerprint (SHA256:..., a unique prefix of 8+ characters will do)",
    },
    url,
    json,
  },
  async run({ args }) {
    const host = args.host.replace(/…$/, "");
    const raw = await operatorJson(args.url, "/admin/hosts/remove", post({ host }));
    const r = checkAnswer(RemovedAnswer, raw, "hosts remove").removed;
    print(
      args.json,
      raw,
      () =>
        `removed host ${quoteText(r.host, SHOW_NAME_MAX)} (${escapeUnsafe(r.key)}): ${r.shares} share(s) closed, ${r.sessions} session(s) ended; its certificate is refused from now on\n`,
    );
  },
});

const hosts = defineCommand({
  meta: { name: "hosts", description: "List enrolled hosts (default), or remove one" },
  args: listHosts.args,
  subCommands: { list: listHosts, remove: removeHost },
  default: "list",
});

const enrollToken = defineCommand({
  meta: {
    name: "enroll-token",
    description: "Mint a single-use host enrolment token (printed once; the coordinator keeps only its hash)",
  },
  args: {
    ttl: { type: "string", default: "24h", description: "How long it stays valid (1m to 30 days; e.g. 1h, 24h, 720h)" },
    url,
    json,
  },
  async run({ args }) {
    const ttlSec = Math.round(parseDuration(args.ttl, "ttl", Number.MAX_SAFE_INTEGER) / 1000);
    if (ttlSec < 60 || ttlSec > 30 * 86_400)
      throw new ConfigError(`--ttl must be between 1m and 720h (got "${args.ttl}")`);
    const raw = await operatorJson(args.url, "/admin/enroll-tokens", post({ ttlSec }));
    const answer = checkAnswer(TokenAnswer, raw, "enroll-token");
    if (args.json) return print(true, raw, () => "");
    // The token alone on stdout (TOKEN=$(tessera admin enroll-token)); how to use it on stderr.
    console.log(answer.token);
    process.stderr.write(
      `single use, valid until ${answer.expiresAt}; on the new host run: tessera link COORDINATOR:PORT --token TOKEN\n`,
    );
  },
});

export default defineCommand({
  meta: {
    name: "admin",
    description: "Operator's view and controls: live sessions, enrolled hosts, host removal, enrolment tokens, revoke",
  },
  subCommands: {
    sessions,
    hosts,
    "enroll-token": enrollToken,
    revoke: () => import("./revoke.ts").then((m) => m.default),
  },
});
