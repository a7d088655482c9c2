// `coordinator --console`: the console's parts put together (the page, the audit view, the chart's
// sampler) and the line the coordinator prints so the operator knows where it is and how to reach it safely.
import { isLoopbackUrl } from "../wire/address.ts";
import { AuditView } from "./audit-view.ts";
import { childVerifier } from "./audit-verify-run.ts";
import type { Broker } from "./broker.ts";
import { ChartSampler } from "./chart.ts";
import { ConsoleHttp } from "./console-http.ts";

export interface ConsoleSetup {
  http: ConsoleHttp;
  stop(): void;
  /** What the coordinator prints at start: the URL, and how to reach it safely when it is plain HTTP. */
  announce(base: URL, https: boolean): string;
}

export function openConsole(o: { auditFile: () => string; certFile: string; broker: Broker }): ConsoleSetup {
  const chart = new ChartSampler(() => o.broker.counts.sessions);
  chart.start();
  const http = new ConsoleHttp({ audit: new AuditView(o.auditFile, childVerifier(o.certFile)), chart });
  return {
    http,
    stop: () => chart.stop(),
    announce(base, https) {
      const url = new URL("/console", base).href;
      if (https || isLoopbackUrl(base))
        return `console: ${url} (sign in with the operator token; it never answers access requests)`;
      return `console: ${url} is plain HTTP on a network address: the page refuses to send the operator token there; serve it over HTTPS (--http-cert/--http-key) or keep --http on 127.0.0.1 and use an ssh tunnel (see DEPLOYING.md)`;
    },
  };
}
