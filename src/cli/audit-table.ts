// Human-readable rendering of audit lines for `tessera audit tail`: who, what, when, bytes.
import type { AuditLine } from "../audit/verify.ts";
import { escapeUnsafe } from "../wire/untrusted-text.ts";

const HIDDEN = new Set(["seq", "ts", "event", "prev", "sig", "prevCheckpoint"]);

/** Rows fit 80 columns: the columns on one line, the details below it, indented and wrapped at words. */
const WIDTH = 80;
const DETAIL_INDENT = "    ";

export function header(): string {
  return `${"TIME".padEnd(20)} ${"SEQ".padStart(6)}  ${"EVENT".padEnd(17)} ${"WHO".padEnd(16)} SESSION/SHARE`;
}

export function row(rec: AuditLine): string {
  const f = rec as Record<string, unknown>;
  const who = str(f.guest)
    ? `${f.guest}${str(f.host) ? ` @${f.host}` : ""}`
    : str(f.host)
      ? `host ${f.host}`
      : str(f.by)
        ? `operator`
        : "";
  const where = str(f.sessionId) || str(f.shareId) || str(f.requestId) || "";
  const details: string[] = [];
  if (typeof f.bytesUp === "number" || typeof f.bytesDown === "number")
    details.push(`↑${bytes(Number(f.bytesUp ?? 0))} ↓${bytes(Number(f.bytesDown ?? 0))}`);
  for (const [k, val] of Object.entries(f)) {
    if (HIDDEN.has(k) || ["guest", "host", "sessionId", "bytesUp", "bytesDown"].includes(k)) continue;
    if (k === "shareId" && where === val) continue;
    if (val === null || val === undefined || val === "") continue;
    details.push(`${k}=${typeof val === "string" && /\s/.test(val) ? JSON.stringify(val) : String(val)}`);
  }
  const ts = rec.ts.replace("T", " ").replace(/\.\d+Z$/, "Z");
  // A log written before guest text was escaped at write time may still hold control or bidi characters.
  const main = `${ts.padEnd(20)} ${String(rec.seq).padStart(6)}  ${clip(rec.event, 17).padEnd(17)} ${clip(who, 16).padEnd(16)} ${clip(where, 16)}`;
  return [main.trimEnd(), ...wrapWords(details.map(escapeUnsafe), WIDTH, DETAIL_INDENT)].join("\n");
}

/** Words (here key=value pairs) on lines of at most `width`, each starting with `indent`; a longer word keeps its own line. */
function wrapWords(words: string[], width: number, indent: string): string[] {
  const lines: string[] = [];
  let line = "";
  for (const w of words) {
    if (line && indent.length + line.length + 1 + w.length > width) {
      lines.push(indent + line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(indent + line);
  return lines;
}

function str(x: unknown): string {
  return typeof x === "string" ? x : "";
}

function clip(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n}B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let x = n;
  let u = -1;
  while (x >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return `${x.toFixed(x < 10 ? 1 : 0)}${units[u]}`;
}
