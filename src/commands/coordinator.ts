// `tessera coordinator`: the public rendezvous: control plane over mTLS, data plane splice, HTTP health/revoke.
import fs from "node:fs";
import path from "node:path";
import { defineCommand } from "citty";
import * as v from "valibot";
import { issueText } from "../validate.ts";
import { AuditLog } from "../audit/log.ts";
import { ConfigError } from "../errors.ts";
import { logger, setLogFormat, stampLines } from "../log.ts";
import { Coordinator } from "../coordinator/listener.ts";
import { EnrollRecords } from "../coordinator/enroll.ts";
import { startHttp } from "../coordinator/http.ts";
import { hashToken, OperatorGate } from "../coordinator/operator-gate.ts";
import { openConsole } from "../coordinator/console-setup.ts";
import { Admin } from "../coordinator/admin.ts";
import { loadCodeKey } from "../coordinator/code-key.ts";
import { LIMITS } from "../coordinator/limits.ts";
import { formatTarget, splitAddress } from "../wire/address.ts";
import { Store } from "../store/store.ts";
import { Cluster } from "../coordinator/cluster.ts";
import { labelNode } from "../coordinator/metrics.ts";
import { parseCount, parseDuration, parseSize } from "../cli/duration.ts";
import { readRequired } from "../cli/home.ts";
import { readHttpTls } from "../cli/http-tls.ts";
import { handOutLines, prepareFirstRun } from "../cli/first-run.ts";
import { listenError } from "../coordinator/listen-errors.ts";
import { VERSION } from "../version.ts";
import { lockCoordinatorFiles } from "../store/file-lock.ts";
import { tellHosts } from "../coordinator/host-notice.ts";
import { closeOrphans, LOST } from "../coordinator/orphans.ts";

const log = logger("coordinator");

export default defineCommand({
  meta: {
    name: "coordinator",
    description: "Run the coordinator (brokers requests and approvals, relays ciphertext, keeps the audit log)",
  },
  args: {
    certs: {
      type: "string",
      default: "pki",
      description: "Directory written by `tessera ca` (or by --init; the default pki is created when it holds no CA)",
    },
    init: {
      type: "boolean",
      description:
        "First run: create the CA, this coordinator's certificate, the operator token and a host enrolment token in --certs (never over an existing CA), then print the host's and the guest's link lines",
    },
    name: {
      type: "string",
      description:
        "With a first run: the names hosts and guests dial, comma-separated, for the certificate (default: this machine's hostname and localhost)",
    },
    listen: {
      type: "string",
      default: "0.0.0.0:8443",
      description: "TLS address for agents, shares and guests (control and data on one port)",
    },
    http: {
      type: "string",
      default: "127.0.0.1:8080",
      description: "HTTP address for /healthz, /metrics, /audit/head and the operator's revoke and /admin/ endpoints",
    },
    "http-cert": {
      type: "string",
      description: "PEM certificate (chain) file: serve the HTTP endpoints over HTTPS (needs --http-key)",
    },
    "http-key": { type: "string", description: "PEM private key file for --http-cert" },
    console: {
      type: "boolean",
      default: false,
      description:
        "Serve the operator's console (a web page: sessions, hosts, audit, a last-hour chart) at /console on --http; sign in with the operator token. Off by default",
    },
    "log-format": {
      type: "string",
      description: "pretty or json (one JSON object a line on stderr); default $TESSERA_LOG_FORMAT or pretty",
    },
    audit: { type: "string", default: "audit.jsonl", description: "Append-only audit log file" },
    "audit-rotate": {
      type: "string",
      default: "64MiB",
      description: "Start a new audit file (chained to the old one) past this size; 0 never",
    },
    "audit-checkpoint": {
      type: "string",
      default: "1000",
      description: "Sign a checkpoint line with the coordinator key every N events; 0 never",
    },
    "audit-checkpoint-interval": {
      type: "string",
      default: "60s",
      description:
        "Also sign at most this long after any event (the log's first line and a clean stop are always signed); 1s to 24h",
    },
    db: { type: "string", default: "tessera.db", description: "State database: SQLite file path, or postgres://..." },
    node: {
      type: "string",
      description:
        "Run as one node (this name: lowercase letters, digits, dashes) of a deployment sharing --db postgres://... and the CA; needs --advertise",
    },
    advertise: {
      type: "string",
      description: "With --node: HOST:PORT where the other nodes reach this node's --listen port",
    },
    "node-ttl": {
      type: "string",
      default: "10s",
      description:
        "With --node: a node whose heartbeat is older than this is gone (its shares are taken over); 1s to 5m",
    },
    "drain-timeout": {
      type: "string",
      default: "30s",
      description:
        "With --node, on SIGTERM: tell agents and guests to move to other nodes, then let streams under way run this long at most before cutting them",
    },
    "idle-timeout": { type: "string", default: "30m", description: "End a session after this long without traffic" },
    "code-ttl": { type: "string", default: "10m", description: "How long an unredeemed code stays valid" },
    "approval-timeout": {
      type: "string",
      default: "2m",
      description: "Deny a request the host has not answered in this time",
    },
    "heartbeat-interval": {
      type: "string",
      default: "15s",
      description:
        "Ping a control connection (agent, share, guest) that has been quiet this long; clients are told to do the same",
    },
    "heartbeat-timeout": {
      type: "string",
      default: "45s",
      description:
        "A control connection silent this long is gone: its session or share waits out --resume-grace, then closes saying it went silent",
    },
    "resume-grace": {
      type: "string",
      default: "2m",
      description:
        "How long a share waits for its agent, and a session for its guest, after a lost connection or a restart",
    },
    "stream-token-ttl": {
      type: "string",
      default: "10s",
      description: "How long a stream's guest and agent have to dial the data plane before it is dropped",
    },
    "max-pending-streams": {
      type: "string",
      default: String(LIMITS.maxPendingStreamsPerSession),
      description:
        "Streams of one session offered but not yet connected; more opens are refused until they connect or lapse",
    },
    "max-connections": {
      type: "string",
      default: String(LIMITS.maxConnections),
      description:
        "Connections held at once (control, data and not yet identified); past it new ones are refused and /healthz answers 503",
    },
    "max-connections-per-address": {
      type: "string",
      default: String(LIMITS.maxConnectionsPerAddress),
      description: "Connections from one source address (an IPv6 /64), data streams with a valid token aside",
    },
    "role-timeout": {
      type: "string",
      default: `${LIMITS.roleTimeoutMs / 1000}s`,
      description: "Close a control connection that serves, approves, asks for and holds nothing for this long",
    },
    "max-shares-per-host": {
      type: "string",
      default: String(LIMITS.maxSharesPerHost),
      description: "Shares one enrolled host may hold at once",
    },
    "max-codes-per-share": {
      type: "string",
      default: String(LIMITS.maxCodesPerShare),
      description: "Unused codes one share may hold at once",
    },
    "revalidate-interval": {
      type: "string",
      default: "1s",
      description:
        "How often every live session is checked again (host removed, agent or guest away past the grace, idle); 100ms to 1m",
    },
  },
  async run({ args, rawArgs }) {
    setLogFormat(args["log-format"]);
    stampLines(true);
    const httpTls = readHttpTls(args["http-cert"], args["http-key"]);
    const dir = args.certs;
    const firstRun = await prepareFirstRun({
      dir,
      init: !!args.init,
      certsGiven: rawArgs.some((a) => a === "--certs" || a.startsWith("--certs=")),
      names: args.name,
      tokenTtlMs: 86_400_000,
      say: (line) => log.info(line),
    });
    const need = (f: string) =>
      readRequired(
        path.join(dir, f),
        `${dir} is missing ${f}: run \`tessera ca --coordinator-name NAME --dir ${dir}\``,
      );
    const ca = { certPem: need("ca.crt"), keyPem: need("ca.key") };
    const tokenFile = path.join(dir, "operator-token");
    const operatorToken = fs.existsSync(tokenFile) ? fs.readFileSync(tokenFile, "utf8").trim() : "";
    const limits = {
      ...LIMITS,
      idleTimeoutMs: parseDuration(args["idle-timeout"], "idle-timeout"),
      codeTtlMs: parseDuration(args["code-ttl"], "code-ttl"),
      approvalTimeoutMs: parseDuration(args["approval-timeout"], "approval-timeout"),
      resumeGraceMs: parseDuration(args["resume-grace"], "resume-grace"),
      streamTokenTtlMs: parseDuration(args["stream-token-ttl"], "stream-token-ttl"),
      maxPendingStreamsPerSession: parseCount(args["max-pending-streams"], "max-pending-streams"),
      maxConnections: parseCount(args["max-connections"], "max-connections"),
      maxConnectionsPerAddress: parseCount(args["max-connections-per-address"], "max-connections-per-address"),
      roleTimeoutMs: parseDuration(args["role-timeout"], "role-timeout"),
      maxSharesPerHost: parseCount(args["max-shares-per-host"], "max-shares-per-host"),
      maxCodesPerShare: parseCount(args["max-codes-per-share"], "max-codes-per-share"),
      heartbeatPingMs: parseDuration(args["heartbeat-interval"], "heartbeat-interval"),
      heartbeatDeadMs: parseDuration(args["heartbeat-timeout"], "heartbeat-timeout"),
      revalidateMs: parseDuration(args["revalidate-interval"], "revalidate-interval"),
    };
    if (limits.heartbeatPingMs < 100 || limits.heartbeatDeadMs <= limits.heartbeatPingMs) {
      throw new ConfigError(
        `--heartbeat-timeout (${args["heartbeat-timeout"]}) must be longer than --heartbeat-interval (${args["heartbeat-interval"]}), and the interval at least 100ms`,
      );
    }
    if (limits.revalidateMs < 100 || limits.revalidateMs > 60_000)
      throw new ConfigError(
        `--revalidate-interval must be between 100ms and 1m (got "${args["revalidate-interval"]}")`,
      );
    const node = nodeArgs(args);
    const l = splitAddress(args.listen, 8443, true);
    const h = splitAddress(args.http, 8080, true);
    const drainMs = parseDuration(args["drain-timeout"], "drain-timeout");
    if (drainMs > 600_000)
      throw new ConfigError(`--drain-timeout must be at most 10m (got "${args["drain-timeout"]}")`);
    const checkpointEvery = Number(args["audit-checkpoint"]);
    if (!Number.isInteger(checkpointEvery) || checkpointEvery < 0)
      throw new ConfigError(`--audit-checkpoint must be a whole number (got "${args["audit-checkpoint"]}")`);
    const checkpointIntervalMs = parseDuration(args["audit-checkpoint-interval"], "audit-checkpoint-interval");
    if (checkpointIntervalMs < 1000 || checkpointIntervalMs > 86_400_000)
      throw new ConfigError(
        `--audit-checkpoint-interval must be between 1s and 24h (got "${args["audit-checkpoint-interval"]}")`,
      );
    const keyPem = need("coordinator.key");
    const rotateBytes = parseSize(args["audit-rotate"], "audit-rotate");
    // Heard from here on: a stop asked for while starting waits for the start, then stops cleanly.
    const stopped = new Promise<string>((resolve) => {
      process.once("SIGINT", () => resolve("SIGINT"));
      process.once("SIGTERM", () => resolve("SIGTERM"));
    });
    // One coordinator per audit log and state file: a second exits here, before it writes anything.
    const locks = lockCoordinatorFiles(args.audit, args.db);
    const store = await Store.open(args.db);
    // Quiet: the log is read (a torn last line set aside) but written only once the ports are bound.
    let told: ((message: string) => void) | undefined;
    const audit = AuditLog.open(args.audit, {
      rotateBytes,
      checkpointEvery,
      checkpointIntervalMs,
      signingKeyPem: keyPem,
      quiet: true,
      onFull: (m) => {
        log.error(m);
        told?.(m);
      },
      onRoom: (m) => {
        log.info(m);
        told?.(m);
      },
    });
    const codeKey = await loadCodeKey(path.join(dir, "code-key"), store);
    const enrollFile = path.join(dir, "enroll-tokens.json");
    const enrollRecords = () => {
      if (!fs.existsSync(enrollFile)) return [];
      const r = v.safeParse(EnrollRecords, JSON.parse(fs.readFileSync(enrollFile, "utf8")));
      if (!r.success) throw new ConfigError(`${enrollFile} is malformed${issueText(r.issues)}`);
      return r.output;
    };
    const cluster = node && new Cluster({ store, codeKey, ...node });
    if (node) labelNode(node.name);
    const coordinator = new Coordinator({
      ca,
      certPem: need("coordinator.crt"),
      keyPem,
      store,
      audit,
      limits,
      codeKey,
      version: VERSION,
      enrollRecords,
      cluster: cluster || undefined,
      injectHint: testInjectHint(),
    });
    const admin = new Admin(coordinator.broker, {
      store,
      audit,
      limits,
      ca,
      enrollRecords,
      cluster: cluster || undefined,
    });
    told = (m) => tellHosts(coordinator.broker.liveShares, m);
    const gate = new OperatorGate({
      tokenHash: operatorToken ? hashToken(operatorToken) : undefined,
      audit,
      windowMs: limits.refusalAuditWindowMs,
      maxAddresses: limits.maxRefusalAddresses,
      warn: (m) => log.warn(m),
    });
    const consoleHttp = args.console
      ? openConsole({
          auditFile: () => path.resolve(audit.path),
          certFile: path.resolve(dir, "coordinator.crt"),
          broker: coordinator.broker,
        })
      : undefined;
    // Ports first: a taken or bad address fails here, with nothing written. Frames wait for the restore.
    coordinator.broker.hold();
    const bound = await bindOr("--listen", l, () => coordinator.listen(l.host, l.port));
    const http = await bindOr("--http", h, () =>
      startHttp({
        host: h.host,
        port: h.port,
        version: VERSION,
        broker: coordinator.broker,
        gate,
        console: consoleHttp?.http,
        tls: httpTls,
        admin,
        auditHead: () => audit.signedHead(),
        health: () => audit.trouble ?? coordinator.health(),
        ready: () => coordinator.ready(),
      }),
    );
    audit.begin();
    // Every open gets a close: what a killed coordinator left open is closed before anything resumes.
    const orphans = await closeOrphans(store, audit, { node: node?.name });
    if (orphans.streams || orphans.sessions)
      log.warn(
        `closed ${orphans.streams} stream(s) and ${orphans.sessions} session(s) left open by a coordinator that stopped without closing them ("${LOST}", byte counts as last known, marked estimated)`,
      );
    const restored = await coordinator.broker.restore();
    if (cluster) await cluster.start(coordinator.broker);
    coordinator.broker.ready();
    audit.append("coordinator.start", {
      version: VERSION,
      node: node ? node.name : undefined,
      listen: `${bound.host}:${bound.port}`,
      restoredShares: restored.shares,
      restoredSessions: restored.sessions,
      voidedRequests: restored.voided,
    });
    if (restored.shares || restored.sessions)
      log.info(
        `restored ${restored.shares} share(s) and ${restored.sessions} session(s); waiting ${args["resume-grace"]} for their agents and guests to come back`,
      );
    log.info(
      `tessera ${VERSION} coordinator listening on ${bound.host}:${bound.port} (${httpTls ? "https" : "http"} ${http.hostname}:${http.port})`,
    );
    // Plain stdout, not the log: the operator copies these lines as they are.
    if (firstRun) process.stdout.write(handOutLines(firstRun, bound, !!process.stdout.isTTY));
    if (!operatorToken) log.warn("no operator-token in the certs directory: revoke and admin are disabled");
    if (consoleHttp) log.info(consoleHttp.announce(http.url, !!httpTls));
    const signal = await stopped;
    if (cluster && signal === "SIGTERM") {
      // A graceful stop of one node of several: its clients move to the others, its streams run out first.
      log.info(`stopping: clients move to other nodes; streams under way may run ${args["drain-timeout"]} more`);
      const left = await coordinator.drain(drainMs);
      audit.append("coordinator.drain", { shares: left.shares, streams: left.streams, moving: left.moving });
      if (left.streams) log.warn(`drain time over: cutting ${left.streams} stream(s) still under way`);
    }
    log.info("shutting down");
    await coordinator.close();
    if (cluster) await cluster.stop();
    http.stop(true);
    consoleHttp?.stop();
    await gate.flush();
    audit.append("coordinator.stop", {
      keptShares: coordinator.broker.counts.shares + coordinator.broker.counts.sharesAway,
      keptSessions: coordinator.broker.counts.sessions,
    });
    audit.checkpoint();
    audit.close();
    await store.close();
    locks.release();
  },
});

/** Binds a port, or fails naming the flag: the address is taken or not this machine's (nothing was written yet). */
async function bindOr<T>(flag: string, at: { host: string; port: number }, bind: () => T | Promise<T>): Promise<T> {
  try {
    return await bind();
  } catch (err) {
    throw listenError(flag, at.host, at.port, err);
  }
}

/** --node, --advertise and --node-ttl, checked together: several nodes need one PostgreSQL. */
function nodeArgs(args: {
  node?: string;
  advertise?: string;
  db: string;
  "node-ttl": string;
}): { name: string; advertise: string; ttlMs: number } | undefined {
  if (args.node === undefined) {
    if (args.advertise) throw new ConfigError("--advertise is only for a node of several (--node NAME)");
    return undefined;
  }
  if (!/^postgres(ql)?:\/\//.test(args.db)) {
    throw new ConfigError(
      `--node needs a PostgreSQL database shared by all nodes (--db postgres://...); with SQLite (--db ${args.db}) the coordinator runs as a single node: drop --node`,
    );
  }
  if (!/^[a-z0-9][a-z0-9-]{0,31}$/.test(args.node))
    throw new ConfigError(`--node must be 1 to 32 lowercase letters, digits and dashes (got "${args.node}")`);
  if (!args.advertise)
    throw new ConfigError("--node needs --advertise HOST:PORT: where the other nodes reach this node's --listen port");
  const a = splitAddress(args.advertise, 8443, false);
  if (!a.host || a.host === "0.0.0.0" || a.host === "::")
    throw new ConfigError(`--advertise must name an address the other nodes can reach (got "${args.advertise}")`);
  const ttlMs = parseDuration(args["node-ttl"], "node-ttl");
  if (ttlMs < 1000 || ttlMs > 300_000)
    throw new ConfigError(`--node-ttl must be between 1s and 5m (got "${args["node-ttl"]}")`);
  return { name: args.node, advertise: formatTarget(a.host, a.port), ttlMs };
}

/**
 * TEST ONLY: TESSERA_TEST_INJECT_HINT=IP:PORT makes this coordinator add a direct-path hint to every
 * guest's list, as a dishonest coordinator would, so a test can show agents dial nothing. Refused unless
 * TESSERA_TEST_MODE=1 says the process is under test.
 */
function testInjectHint(): { host: string; port: number } | undefined {
  const raw = process.env.TESSERA_TEST_INJECT_HINT;
  if (!raw) return undefined;
  if (process.env.TESSERA_TEST_MODE !== "1")
    throw new ConfigError(
      "TESSERA_TEST_INJECT_HINT is a test-only switch; it needs TESSERA_TEST_MODE=1 and must never be set in a deployment",
    );
  const m = /^([0-9A-Fa-f:.]+):(\d{1,5})$/.exec(raw);
  if (!m) throw new ConfigError(`TESSERA_TEST_INJECT_HINT must be IP:PORT (got "${raw}")`);
  return { host: m[1]!, port: Number(m[2]) };
}
