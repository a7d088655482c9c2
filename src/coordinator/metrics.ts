// The coordinator's counters and gauges, and their Prometheus text exposition (format 0.0.4).
// One registry a process: the broker and the splicer bump counters with one call each; gauges are
// read from the broker's live state at scrape time, so they can never drift from it.

type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge";
  /** Keyed by the rendered label set ("" for none), so a series is created once and kept. */
  series: Map<string, number>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export class Registry {
  private readonly families: Family[] = [];
  /** Labels every series carries (a node of several: node="NAME"), rendered once. */
  private constant = "";

  /** Adds a label to every series, so several nodes' scrapes stay apart when summed. */
  constantLabel(name: string, value: string): void {
    this.constant = labelKey({ [name]: value }).slice(1, -1);
  }

  counter(name: string, help: string, initial: Labels[] = [{}]): Counter {
    return new Counter(this.add(name, help, "counter", initial));
  }

  gauge(name: string, help: string): Gauge {
    return new Gauge(this.add(name, help, "gauge", [{}]));
  }

  /** Prometheus text format: HELP and TYPE before each family, one line a series. */
  render(): string {
    const out: string[] = [];
    for (const f of this.families) {
      out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${f.name} ${f.type}`);
      for (const [labels, value] of f.series) out.push(`${f.name}${this.withConstant(labels)} ${value}`);
    }
    return `${out.join("\n")}\n`;
  }

  private withConstant(labels: string): string {
    if (!this.constant) return labels;
    return labels ? `${labels.slice(0, -1)},${this.constant}}` : `{${this.constant}}`;
  }

  private add(name: string, help: string, type: Family["type"], initial: Labels[]): Family {
    if (!NAME.test(name)) throw new Error(`bad metric name ${name}`);
    if (this.families.some((f) => f.name === name)) throw new Error(`metric ${name} registered twice`);
    // Series named up front start at 0, so a rate() over them works before the first event.
    const f: Family = { name, help, type, series: new Map(initial.map((l) => [labelKey(l), 0])) };
    this.families.push(f);
    return f;
  }
}

export class Counter {
  constructor(private readonly f: Family) {}

  inc(by = 1, labels: Labels = {}): void {
    if (!(by >= 0)) return; // counters only go up; a negative or NaN step is a bug, not data
    const k = labelKey(labels);
    this.f.series.set(k, (this.f.series.get(k) ?? 0) + by);
  }

  value(labels: Labels = {}): number {
    return this.f.series.get(labelKey(labels)) ?? 0;
  }

  /** Every series added up (all reasons, both directions). */
  total(): number {
    let sum = 0;
    for (const n of this.f.series.values()) sum += n;
    return sum;
  }
}

export class Gauge {
  constructor(private readonly f: Family) {}

  set(value: number): void {
    this.f.series.set("", value);
  }
}

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return "";
  const parts = keys.map((k) => {
    if (!LABEL.test(k)) throw new Error(`bad label name ${k}`);
    const val = labels[k]!.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
    return `${k}="${val}"`;
  });
  return `{${parts.join(",")}}`;
}

const registry = new Registry();

/** One node of several: every series this process exposes carries node="NAME". */
export function labelNode(name: string): void {
  registry.constantLabel("node", name);
}

/** Redemption failure reasons; anything else is counted as "other" so labels stay a small fixed set. */
const REDEEM_REASONS = ["invalid", "offline", "bad_code", "rate_limited", "no_share", "bad_target"] as const;
/** Host enrolment failure reasons (the token's error codes), likewise a fixed set. */
const ENROL_REASONS = ["bad_token", "token_expired", "token_used", "rate_limited"] as const;

export const metrics = {
  registry,
  sessionsActive: registry.gauge("tessera_sessions_active", "Sessions currently open."),
  streamsActive: registry.gauge("tessera_streams_active", "Streams open inside sessions' data channels."),
  channelsOpen: registry.gauge(
    "tessera_channels_open",
    "Sessions' data channels (one connection each, carrying the session's streams) set up or open.",
  ),
  streamsPending: registry.gauge(
    "tessera_streams_pending",
    "Data channels asked for and still waiting for the guest or the agent to connect.",
  ),
  agentsConnected: registry.gauge("tessera_agents_connected", "Agents connected and serving a share."),
  sharesAway: registry.gauge("tessera_shares_away", "Shares whose agent is gone, kept for the resume grace period."),
  requestsPending: registry.gauge("tessera_requests_pending", "Access requests waiting for the host's answer."),
  sessionsTotal: registry.counter("tessera_sessions_total", "Sessions opened since start."),
  streamsTotal: registry.counter("tessera_streams_total", "Data streams opened since start."),
  streamsByPath: registry.counter(
    "tessera_streams_path_total",
    "Data streams opened since start, by path: direct (the host's agent dialled the guest) or relay (spliced here).",
    [{ path: "direct" }, { path: "relay" }],
  ),
  directFallbacks: registry.counter(
    "tessera_direct_fallbacks_total",
    "Streams offered on the direct path that went through the relay instead (the agent could not reach the guest).",
  ),
  bytesRelayed: registry.counter(
    "tessera_relayed_bytes_total",
    "Stream bytes carried by relayed data channels (the agent's counts, the sum of the stream.close lines).",
    [{ direction: "guest_to_agent" }, { direction: "agent_to_guest" }],
  ),
  bytesDirect: registry.counter(
    "tessera_direct_bytes_total",
    "Bytes moved on the direct path (the agent's count at each stream's end), guest to host and back.",
  ),
  operatorRefusals: registry.counter(
    "tessera_operator_refusals_total",
    "Requests to the operator endpoints refused: a missing or wrong token, or too many of them from one address.",
    [{ reason: "bad_token" }, { reason: "rate_limited" }],
  ),
  requests: registry.counter(
    "tessera_requests_total",
    "Access requests by outcome (voided: left waiting by a restart; mismatch: the code did not match).",
    [
      { outcome: "approved" },
      { outcome: "denied" },
      { outcome: "expired" },
      { outcome: "voided" },
      { outcome: "mismatch" },
    ],
  ),
  redeemFailures: registry.counter(
    "tessera_code_redemption_failures_total",
    "Code redemptions (and share-id requests) refused, by reason.",
    REDEEM_REASONS.map((reason) => ({ reason })),
  ),
  enrolFailures: registry.counter(
    "tessera_enrol_failures_total",
    "Host enrolments refused, by reason.",
    ENROL_REASONS.map((reason) => ({ reason })),
  ),
  connectionsOpen: registry.gauge(
    "tessera_connections_open",
    "Connections holding a slot: control, data and not yet identified.",
  ),
  connectionsRefused: registry.counter(
    "tessera_connections_refused_total",
    "Connections refused on arrival: every slot in use (full) or the source's cap reached (per_address).",
    [{ reason: "full" }, { reason: "per_address" }],
  ),
};

export function redeemFailed(reason: string): void {
  // Unknown, used and expired are one series: the client hears one answer for them, and so does a scrape (the audit log keeps which).
  if (reason === "unknown" || reason === "used" || reason === "expired") reason = "invalid";
  metrics.redeemFailures.inc(1, { reason: (REDEEM_REASONS as readonly string[]).includes(reason) ? reason : "other" });
}

export function enrolFailed(reason: string): void {
  metrics.enrolFailures.inc(1, { reason: (ENROL_REASONS as readonly string[]).includes(reason) ? reason : "other" });
}

/** Live state read at scrape time. */
export interface LiveCounts {
  shares: number;
  sessions: number;
  requests: number;
  /** Streams offered and not ended, paired or not; pendingStreams of them not paired yet. */
  streams: number;
  pendingStreams?: number;
  /** Sessions' data channels, connected or not: each still waiting to connect is in pendingStreams too. */
  channels?: number;
  sharesAway?: number;
}

export function renderMetrics(live: LiveCounts): string {
  metrics.sessionsActive.set(live.sessions);
  // Only a channel waits to connect (a stream inside one has no connection of its own): subtracting the
  // waiting ones as well would count each of those channels twice and hide a live stream per channel.
  metrics.streamsActive.set(Math.max(0, live.streams - (live.channels ?? 0)));
  metrics.channelsOpen.set(live.channels ?? 0);
  metrics.streamsPending.set(live.pendingStreams ?? 0);
  metrics.agentsConnected.set(live.shares);
  metrics.sharesAway.set(live.sharesAway ?? 0);
  metrics.requestsPending.set(live.requests);
  return registry.render();
}
