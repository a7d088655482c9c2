// Reusable checks over one or more nodes' audit logs, for fault tests: every stream.open has exactly one
// stream.close, no session is closed twice, and a session's close totals are the sum of its streams' closes.
// Reads files as they are on disk (rotated files next to a given one are included, oldest first).
import fs from "node:fs";
import path from "node:path";

export interface AuditLine {
  seq: number;
  ts: string;
  event: string;
  file: string;
  [k: string]: unknown;
}

/** Every line of `file` and of its rotated predecessors (`file.000000000123`), oldest first; a torn last line is skipped. */
export function readAudit(file: string): AuditLine[] {
  const dir = path.dirname(file);
  const base = path.basename(file);
  const rotated = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(`${base}.`) && /^\d+$/.test(f.slice(base.length + 1)))
    .sort();
  const out: AuditLine[] = [];
  for (const f of [...rotated.map((r) => path.join(dir, r)), file]) {
    if (!fs.existsSync(f)) continue;
    for (const raw of fs.readFileSync(f, "utf8").split("\n")) {
      if (!raw) continue;
      try {
        out.push({ ...(JSON.parse(raw) as AuditLine), file: f });
      } catch {
        // A torn line: `tessera audit verify` is the judge of those; here it just has no event.
      }
    }
  }
  return out;
}

export interface OpenCloseReport {
  opens: number;
  closes: number;
  /** stream.open lines with no stream.close (stream ids). */
  unclosed: string[];
  /** Streams closed more than once. */
  closedTwice: string[];
  /** stream.close lines with no stream.open (a pooled spare never used writes neither). */
  closedUnopened: string[];
  /** Closes marked as estimated (written for a stream a lost coordinator left open). */
  estimated: number;
  /** Sessions with more than one session.close. */
  sessionsClosedTwice: string[];
  /** session.close lines whose streams/bytes differ from the sum of that session's stream.close lines. */
  totalsMismatch: { sessionId: string; line: Totals; streams: Totals }[];
}

interface Totals {
  streams: number;
  bytesUp: number;
  bytesDown: number;
}

/**
 * Checks opens against closes over the lines of any number of nodes' logs (pass them all together: an
 * adopting node may write the close of a stream another node opened).
 */
export function checkOpenClose(lines: AuditLine[]): OpenCloseReport {
  const opened = new Set<string>();
  const closedCount = new Map<string, number>();
  const perSession = new Map<string, Totals>();
  const sessionCloses = new Map<string, AuditLine[]>();
  let estimated = 0;
  for (const l of lines) {
    if (l.event === "stream.open") opened.add(String(l.streamId));
    else if (l.event === "stream.close") {
      const id = String(l.streamId);
      closedCount.set(id, (closedCount.get(id) ?? 0) + 1);
      if (l.estimated === true) estimated++;
      const sid = String(l.sessionId);
      const t = perSession.get(sid) ?? { streams: 0, bytesUp: 0, bytesDown: 0 };
      t.streams++;
      t.bytesUp += Number(l.bytesUp ?? 0);
      t.bytesDown += Number(l.bytesDown ?? 0);
      perSession.set(sid, t);
    } else if (l.event === "session.close") {
      const sid = String(l.sessionId);
      sessionCloses.set(sid, [...(sessionCloses.get(sid) ?? []), l]);
    }
  }
  const totalsMismatch: OpenCloseReport["totalsMismatch"] = [];
  for (const [sid, closes] of sessionCloses) {
    const line = closes.at(-1)!;
    const got = {
      streams: Number(line.streams ?? 0),
      bytesUp: Number(line.bytesUp ?? 0),
      bytesDown: Number(line.bytesDown ?? 0),
    };
    const want = perSession.get(sid) ?? { streams: 0, bytesUp: 0, bytesDown: 0 };
    if (got.streams !== want.streams || got.bytesUp !== want.bytesUp || got.bytesDown !== want.bytesDown)
      totalsMismatch.push({ sessionId: sid, line: got, streams: want });
  }
  return {
    opens: opened.size,
    closes: [...closedCount.values()].reduce((a, b) => a + b, 0),
    unclosed: [...opened].filter((id) => !closedCount.has(id)),
    closedTwice: [...closedCount].filter(([, n]) => n > 1).map(([id]) => id),
    closedUnopened: [...closedCount.keys()].filter((id) => !opened.has(id)),
    estimated,
    sessionsClosedTwice: [...sessionCloses].filter(([, c]) => c.length > 1).map(([id]) => id),
    totalsMismatch,
  };
}

/** The problems in a report as lines (empty when every open has exactly one close and totals add up). */
export function problems(r: OpenCloseReport, opts: { totals?: boolean } = {}): string[] {
  const out: string[] = [];
  if (r.unclosed.length) out.push(`${r.unclosed.length} stream.open without a close: ${r.unclosed.join(", ")}`);
  if (r.closedTwice.length) out.push(`streams closed twice: ${r.closedTwice.join(", ")}`);
  if (r.closedUnopened.length) out.push(`stream.close without an open: ${r.closedUnopened.join(", ")}`);
  if (r.sessionsClosedTwice.length) out.push(`sessions closed twice: ${r.sessionsClosedTwice.join(", ")}`);
  if (opts.totals !== false)
    for (const m of r.totalsMismatch)
      out.push(
        `session ${m.sessionId} closed with ${JSON.stringify(m.line)}, its streams add up to ${JSON.stringify(m.streams)}`,
      );
  return out;
}

/** Runs `tessera audit verify FILES... [--cert CERT]` with the given binary argv; resolves with its exit code and output. */
export async function verifyAudit(
  tessera: string[],
  files: string[],
  opts: { cert?: string; cwd?: string } = {},
): Promise<{ code: number; out: string }> {
  const p = Bun.spawn([...tessera, "audit", "verify", ...files, ...(opts.cert ? ["--cert", opts.cert] : [])], {
    cwd: opts.cwd,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out: out + err };
}

/** Is every line complete (the file ends with a newline, every line parses)? Returns the first bad line number, or 0. */
export function firstTornLine(file: string): number {
  const text = fs.readFileSync(file, "utf8");
  if (text && !text.endsWith("\n")) return text.split("\n").length;
  const lines = text.split("\n").slice(0, -1);
  for (let i = 0; i < lines.length; i++) {
    try {
      JSON.parse(lines[i]!);
    } catch {
      return i + 1;
    }
  }
  return 0;
}
