// The host's live view as text: one row a session (guest, target, scope, streams, bytes, idle and time
// left) cut to fit the terminal, and the plain line a state change prints where there is no terminal.
import type { Scope } from "../wire/scope.ts";

/** The panel never grows wider than this, whatever the terminal: it must read on an 80-column one. */
export const PANEL_WIDTH = 80;
/** Most rows drawn at once; the rest are counted (and `l` lists them all). */
export const PANEL_ROWS = 8;

/** One session as the view knows it: from the coordinator's status frame, plus what this host answered. */
export interface LiveRow {
  n: number;
  sessionId: string;
  guest: string;
  target: string;
  streams: number;
  up: number;
  down: number;
  /** Seconds since its last activity, as of `seenAt`. */
  idleSec: number;
  away: boolean;
  /** Which path the session's new streams take: straight to the guest, or through the coordinator. */
  path?: "direct" | "relay";
  scope?: Scope;
  /** When the host approved it (a time scope counts from then), if this terminal saw it. */
  openedAt?: number;
  /** When the status this row comes from arrived, so countdowns run between frames. */
  seenAt: number;
}

/** 999B, 12.3k, 4.5M, 1.2G: at most 5 characters. */
export function bytes(n: number): string {
  if (n < 1000) return `${n}B`;
  const units = ["k", "M", "G", "T", "P"];
  let v = n;
  let u = -1;
  while (v >= 999.5 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v < 9.95 ? v.toFixed(1) : Math.round(v)}${units[u]}`;
}

/** 0:07, 14:32, 2:05:09, 3d04h: a countdown in at most 7 characters. */
export function clock(sec: number): string {
  const s = Math.max(0, Math.floor(sec));
  if (s >= 86_400) return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, "0")}h`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** A scope in a few characters: "15m", "1c", "ro", or together "15m 1c ro"; "-" for none. */
export function scopeShort(s: Scope | undefined): string {
  if (!s) return "-";
  const parts: string[] = [];
  if (s.ttlMs !== undefined)
    parts.push(
      s.ttlMs % 3_600_000 === 0
        ? `${s.ttlMs / 3_600_000}h`
        : s.ttlMs % 60_000 === 0
          ? `${s.ttlMs / 60_000}m`
          : `${Math.round(s.ttlMs / 1000)}s`,
    );
  if (s.streams !== undefined) parts.push(`${s.streams}c`);
  if (s.readOnly) parts.push("ro");
  return parts.join(" ") || "-";
}

/** Seconds until the idle limit ends the session, and until its time scope does (undefined: no such limit). */
export function countdowns(
  r: LiveRow,
  now: number,
  idleTimeoutSec: number | undefined,
): { idle?: number; left?: number } {
  const since = (now - r.seenAt) / 1000;
  const idle = idleTimeoutSec === undefined ? undefined : idleTimeoutSec - r.idleSec - since;
  const left =
    r.scope?.ttlMs !== undefined && r.openedAt !== undefined ? (r.openedAt + r.scope.ttlMs - now) / 1000 : undefined;
  return { idle, left };
}

/**
 * What a name or target looks like in a fixed-width cell: printable ASCII only (a wide or combining
 * character would push the row past its width; the log lines show names in full), cut with "~".
 */
export function cell(s: string, width: number): string {
  const plain = s.replace(/[^\x20-\x7e]/g, "?");
  return (plain.length > width ? `${plain.slice(0, width - 1)}~` : plain).padEnd(width);
}

const HEAD = ` #  ${"guest".padEnd(9)} ${"target".padEnd(15)} ${"scope".padEnd(7)} strm    up  down idle in ends in path`;

/** The panel's lines (none when there is no session), each at most `width` columns. */
export function panelLines(
  rows: LiveRow[],
  now: number,
  idleTimeoutSec: number | undefined,
  width = PANEL_WIDTH,
): string[] {
  if (!rows.length) return [];
  const w = Math.max(20, Math.min(PANEL_WIDTH, width)) - 1;
  const title = `── ${rows.length} session${rows.length === 1 ? "" : "s"} · k N ends one · l lists · c code · ? keys `;
  const lines = [title.padEnd(w, "─"), HEAD];
  for (const r of rows.slice(0, PANEL_ROWS)) lines.push(rowLine(r, now, idleTimeoutSec));
  if (rows.length > PANEL_ROWS) lines.push(`    … and ${rows.length - PANEL_ROWS} more (l lists them all)`);
  // The last guard: a line one column too wide wraps, and a wrapped panel cannot be redrawn in place.
  return lines.map((l) => l.slice(0, w));
}

export function rowLine(r: LiveRow, now: number, idleTimeoutSec: number | undefined): string {
  const { idle, left } = countdowns(r, now, idleTimeoutSec);
  const idleText = r.away ? "away" : idle === undefined ? "-" : clock(idle);
  return `${String(r.n).padStart(2)}  ${cell(r.guest, 9)} ${cell(r.target, 15)} ${cell(scopeShort(r.scope), 7)} ${String(r.streams).padStart(4)} ${bytes(r.up).padStart(5)} ${bytes(r.down).padStart(5)} ${idleText.padStart(7)} ${(left === undefined ? "-" : clock(left)).padStart(7)} ${r.path ?? "-"}`;
}

/** One session on a line of its own, for `l` and for the plain fallback. */
export function plainLine(r: LiveRow, now: number, idleTimeoutSec: number | undefined): string {
  const { idle, left } = countdowns(r, now, idleTimeoutSec);
  const scope = r.scope ? `, scope ${scopeShort(r.scope)}` : "";
  const timing = r.away
    ? ", guest away (reconnecting)"
    : `${idle === undefined ? "" : `, idle limit in ${clock(idle)}`}${left === undefined ? "" : `, ends in ${clock(left)}`}`;
  const path = r.path === "direct" ? ", direct to the guest" : r.path === "relay" ? ", through the coordinator" : "";
  return `#${r.n} ${r.sessionId} ${cell(r.guest, 64).trimEnd()} -> ${r.target}${scope}: ${r.streams} stream${r.streams === 1 ? "" : "s"}, ${bytes(r.up)} up, ${bytes(r.down)} down${timing}${path}`;
}

export const KEYS_HELP = [
  "  keys (type, then Enter):",
  "    k N   end session N (the others keep going)",
  "    l     list the sessions",
  "    c     mint another code",
  "    ?     show these keys",
].join("\n");
