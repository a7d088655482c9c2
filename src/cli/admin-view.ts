// What `tessera admin` prints: the coordinator's answers checked against their schemas, then shown as
// tables that fit 80 columns (two lines an entry where one would not).
import * as v from "valibot";
import { TesseraError } from "../errors.ts";
import { issueText } from "../validate.ts";
import { bytes } from "./audit-table.ts";
import { escapeUnsafe } from "../wire/untrusted-text.ts";

// Loose objects: a newer coordinator may add fields; the ones shown here must be there and well-typed.
const SessionView = v.looseObject({
  id: v.string(),
  host: v.string(),
  guest: v.string(),
  guestAddr: v.string(),
  target: v.string(),
  state: v.string(),
  openedAt: v.string(),
  idleSec: v.number(),
  streams: v.looseObject({ live: v.number(), total: v.number() }),
  bytesUp: v.number(),
  bytesDown: v.number(),
});
const HostView = v.looseObject({
  name: v.string(),
  key: v.string(),
  enrolledAt: v.string(),
  lastSeen: v.nullable(v.string()),
  connections: v.number(),
  shares: v.array(v.looseObject({ id: v.string(), sessions: v.number() })),
  removedAt: v.optional(v.string()),
  removedBy: v.optional(v.string()),
});
export const SessionsAnswer = v.looseObject({ sessions: v.array(SessionView) });
export const HostsAnswer = v.looseObject({ hosts: v.array(HostView) });
export const RemovedAnswer = v.looseObject({
  removed: v.looseObject({ host: v.string(), key: v.string(), shares: v.number(), sessions: v.number() }),
});
export const TokenAnswer = v.looseObject({ token: v.string(), id: v.string(), expiresAt: v.string() });

export function checkAnswer<S extends v.GenericSchema>(schema: S, json: unknown, what: string): v.InferOutput<S> {
  const r = v.safeParse(schema, json);
  if (!r.success)
    throw new TesseraError(
      "admin",
      `unexpected answer for ${what}${issueText(r.issues)} (is this tessera as new as the coordinator?)`,
    );
  return r.output;
}

const INDENT = "    ";

export function sessionsTable(sessions: v.InferOutput<typeof SessionView>[], now = Date.now()): string {
  if (sessions.length === 0) return "no live sessions\n";
  const lines = [
    `${"SESSION".padEnd(16)}${"HOST".padEnd(11)}${"GUEST".padEnd(11)}${"TARGET".padEnd(19)}${"AGE".padStart(4)} ${"IDLE".padStart(5)}  STATE`,
  ];
  for (const s of sessions) {
    const age = ago(now - Date.parse(s.openedAt));
    lines.push(
      `${cell(s.id, 14)}  ${cell(s.host, 10)} ${cell(s.guest, 10)} ${cell(s.target, 18)} ${age.padStart(4)} ${ago(s.idleSec * 1000).padStart(5)}  ${clip(s.state, 10)}`,
    );
    const streams = `${s.streams.total} stream${s.streams.total === 1 ? "" : "s"} (${s.streams.live} live)`;
    lines.push(
      `${INDENT}from ${clip(s.guestAddr, 21)}  ${clip(streams, 24)}  ↑${bytes(s.bytesUp)} ↓${bytes(s.bytesDown)}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

export function hostsTable(hosts: v.InferOutput<typeof HostView>[]): string {
  if (hosts.length === 0) return "no enrolled hosts\n";
  const lines = [`${"NAME".padEnd(14)}${"KEY".padEnd(22)}${"ENROLLED".padEnd(18)}${"LAST SEEN".padEnd(18)}SHARES`];
  for (const h of hosts) {
    const seen = h.removedAt
      ? "removed"
      : h.connections > 0
        ? `online (${h.connections})`
        : h.lastSeen
          ? when(h.lastSeen)
          : "never";
    lines.push(
      `${cell(h.name, 12)}  ${cell(shortKey(h.key), 20)}  ${cell(when(h.enrolledAt), 16)}  ${cell(seen, 16)}  ${h.shares.length}`,
    );
    if (h.removedAt)
      lines.push(`${" ".repeat(14)}${clip(`removed ${when(h.removedAt)} by ${h.removedBy ?? "the operator"}`, 66)}`);
  }
  return `${lines.join("\n")}\n`;
}

/** The key as the table shows it: enough to tell hosts apart, and accepted by `admin hosts remove`. */
export function shortKey(key: string): string {
  return key.length > 19 ? `${key.slice(0, 19)}…` : key;
}

function cell(s: string, width: number): string {
  return clip(s, width).padEnd(width);
}

/** Cut to n characters; peer-chosen text (names, addresses, targets) is escaped first, so no cut leaves a raw control. */
function clip(raw: string, n: number): string {
  const s = escapeUnsafe(raw);
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

/** "YYYY-MM-DD HH:MM" in UTC. */
function when(isoTime: string): string {
  return isoTime.replace("T", " ").slice(0, 16);
}

/** A short duration: 45s, 12m, 3h, 2d. */
export function ago(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}
