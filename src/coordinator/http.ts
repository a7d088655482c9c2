// The coordinator's HTTP side: health check, Prometheus metrics, the audit head, the operator's
// endpoints (revoke, /admin/...) behind the operator gate, and with --console the operator's page;
// over plain HTTP or, given a certificate and key, HTTPS.
import type { Broker } from "./broker.ts";
import type { Admin } from "./admin.ts";
import { adminRoute, text, MAX_ADMIN_BODY } from "./admin-http.ts";
import { renderMetrics } from "./metrics.ts";
import { sourceKey } from "./admission.ts";
import type { OperatorGate } from "./operator-gate.ts";
import type { ConsoleHttp } from "./console-http.ts";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";

const log = logger("coordinator");

export interface HttpOptions {
  host: string;
  port: number;
  version: string;
  /** Checks the operator token (rate limited and audited per address) for revoke and /admin/. */
  gate: OperatorGate;
  /** The operator's console (`coordinator --console`); undefined: /console is not served. */
  console?: ConsoleHttp;
  /** The audit log's last durable line signed with the coordinator key, served at GET /audit/head. */
  auditHead?: () => unknown;
  broker: Broker;
  /** The operator's view and controls, served under /admin/. */
  admin?: Admin;
  /** PEM certificate chain and key: serve HTTPS instead of HTTP. */
  tls?: { cert: string; key: string };
  /** Why the coordinator cannot take new work now; /healthz answers 503 with it. */
  health?: () => string | undefined;
  /**
   * Why a load balancer should send no new connections here (stopping, full); /readyz answers 503 with it.
   * Unlike /healthz, a database outage does not count: the node still carries its live sessions.
   */
  ready?: () => string | undefined;
}

const METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export function startHttp(o: HttpOptions) {
  return Bun.serve({
    hostname: o.host,
    port: o.port,
    // Nothing here takes more than a small JSON body.
    maxRequestBodySize: 16 * MAX_ADMIN_BODY,
    ...(o.tls ? { tls: { cert: o.tls.cert, key: o.tls.key } } : {}),
    async fetch(req, server) {
      const url = new URL(req.url);
      if (url.pathname === "/healthz" && req.method === "GET") {
        const down = o.health?.();
        return down ? text(503, `unavailable ${o.version}: ${down}`) : new Response(`ok ${o.version}\n`);
      }
      if (url.pathname === "/readyz" && req.method === "GET") {
        const no = o.ready?.();
        return no ? text(503, `not ready ${o.version}: ${no}`) : new Response(`ready ${o.version}\n`);
      }
      if (url.pathname === "/metrics" && req.method === "GET")
        return new Response(renderMetrics(o.broker.counts), { headers: { "content-type": METRICS_TYPE } });
      if (url.pathname === "/audit/head" && req.method === "GET" && o.auditHead)
        return Response.json(o.auditHead(), { headers: { "cache-control": "no-store" } });
      const page = await o.console?.publicRoute(req, url);
      if (page) return page;
      const m = /^\/s\/([A-Za-z0-9_.-]{1,64})\/revoke$/.exec(url.pathname);
      if (m && req.method !== "POST") return text(405, "use POST");
      if (!m && !url.pathname.startsWith("/admin/")) return text(404, "not found");
      const ip = server.requestIP(req);
      // Counted by source as connections are: an IPv6 address by its /64, so one subscriber gets one budget.
      const refused = o.gate.check(req.headers.get("authorization"), sourceKey(ip?.address) || "unknown");
      if (refused) return text(refused.status, refused.message);
      if (m)
        return (await o.broker.revoke(m[1]!, "operator"))
          ? Response.json({ revoked: m[1] })
          : text(404, `no live session "${m[1]}"`);
      const view = await o.console?.operatorRoute(req, url);
      if (view) return view;
      return o.admin
        ? adminRoute(req, url, o.admin, ip ? `${ip.address}:${ip.port}` : "unknown")
        : text(404, "not found");
    },
    error(err) {
      log.error(`http: ${errorMessage(err)}`);
      return text(500, "internal error; see the coordinator's log");
    },
  });
}
