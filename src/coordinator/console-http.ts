// The operator's console on the --http listener (only with `coordinator --console`): the page and its
// scripts, embedded in the binary and served under a strict Content-Security-Policy, the page's CSP
// violation reports, and the two read-only operator views it needs beyond /admin/ (audit, chart).
// Every action the page takes goes through the operator API `tessera admin` uses; nothing here approves.
import page from "../console/index.html" with { type: "text" };
import css from "../console/app.css" with { type: "text" };
import app from "../console/app.js" with { type: "text" };
import show from "../console/show.js" with { type: "text" };
import draw from "../console/chart.js" with { type: "text" };
import { logger } from "../log.ts";
import { escapeUnsafe } from "../wire/untrusted-text.ts";
import { type AuditView, MAX_AUDIT_LINES } from "./audit-view.ts";
import type { ChartSampler } from "./chart.ts";
import { RateLimiter } from "./limits.ts";

const log = logger("coordinator:console");

/** No inline script or style, nothing from elsewhere, never in a frame; violations come back here. */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "report-uri /console/csp-report",
].join("; ");

/** A tile of four, for the tab (a missing favicon would be a failed request in the page's console). */
const ICON =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="7" height="7" fill="#2457c5"/><rect x="9" width="7" height="7" fill="#7a9be0"/><rect y="9" width="7" height="7" fill="#7a9be0"/><rect x="9" y="9" width="7" height="7" fill="#2457c5"/></svg>';

// Bun types an .html import as a bundle; imported as text it is the file's contents.
const html = page as unknown as string;

const ASSETS: Record<string, { body: string; type: string }> = {
  "/console": { body: html, type: "text/html; charset=utf-8" },
  "/console/": { body: html, type: "text/html; charset=utf-8" },
  "/console/app.css": { body: css, type: "text/css; charset=utf-8" },
  "/console/app.js": { body: app, type: "text/javascript; charset=utf-8" },
  "/console/show.js": { body: show, type: "text/javascript; charset=utf-8" },
  "/console/chart.js": { body: draw, type: "text/javascript; charset=utf-8" },
  "/console/icon.svg": { body: ICON, type: "image/svg+xml" },
};

const MAX_REPORT_BYTES = 8192;

export interface ConsoleOptions {
  audit: AuditView;
  chart: ChartSampler;
}

export class ConsoleHttp {
  /** Reports are unauthenticated: a few are logged a minute, the rest only counted. */
  private readonly logged = new RateLimiter(10, 60_000, 1);
  violations = 0;

  constructor(private readonly o: ConsoleOptions) {}

  /** The page and its files (no token needed: they hold no data), or a CSP report; undefined if not ours. */
  async publicRoute(req: Request, url: URL): Promise<Response | undefined> {
    if (url.pathname === "/console/csp-report" && req.method === "POST") return this.report(req);
    const asset = ASSETS[url.pathname];
    if (!asset) return undefined;
    if (req.method !== "GET" && req.method !== "HEAD") return plain(405, "use GET");
    return new Response(asset.body, { headers: { ...pageHeaders(), "content-type": asset.type } });
  }

  /** The operator views beyond /admin/ the console reads (after the operator gate); undefined if not ours. */
  async operatorRoute(req: Request, url: URL): Promise<Response | undefined> {
    if (url.pathname === "/admin/chart") {
      if (req.method !== "GET") return plain(405, "use GET for /admin/chart");
      return json(this.o.chart.points());
    }
    if (url.pathname !== "/admin/audit") return undefined;
    if (req.method !== "GET") return plain(405, "use GET for /admin/audit");
    const q = url.searchParams;
    const n = Number(q.get("n") ?? 100);
    if (!Number.isInteger(n) || n < 1 || n > MAX_AUDIT_LINES)
      return plain(400, `n must be a whole number from 1 to ${MAX_AUDIT_LINES}`);
    const pick = (k: string) => {
      const s = q.get(k)?.trim();
      return s ? s.slice(0, 300) : undefined;
    };
    const filter = { n, session: pick("session"), host: pick("host"), guest: pick("guest") };
    return json({ chain: await this.o.audit.chain(), lines: this.o.audit.lines(filter) });
  }

  private async report(req: Request): Promise<Response> {
    if (Number(req.headers.get("content-length") ?? 0) > MAX_REPORT_BYTES) return plain(413, "report too long");
    const raw = await req.text();
    if (raw.length > MAX_REPORT_BYTES) return plain(413, "report too long");
    this.violations++;
    if (this.logged.allow("all")) log.warn(`the page's Content-Security-Policy blocked ${describeReport(raw)}`);
    return new Response(null, { status: 204 });
  }
}

/** "script-src-elem (inline) on /console": the report's own words, escaped, never its whole body. */
function describeReport(raw: string): string {
  let r: Record<string, unknown> = {};
  try {
    const body = JSON.parse(raw) as { "csp-report"?: Record<string, unknown> };
    r = body["csp-report"] ?? {};
  } catch {}
  const field = (k: string) => escapeUnsafe(String(r[k] ?? "?")).slice(0, 120);
  return `${field("effective-directive")} (${field("blocked-uri")}) on ${field("document-uri")}`;
}

function pageHeaders(): Record<string, string> {
  return {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
  };
}

function json(body: unknown): Response {
  return Response.json(body, { headers: { "cache-control": "no-store" } });
}

function plain(status: number, body: string): Response {
  return new Response(`${body}\n`, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}
