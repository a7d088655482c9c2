// A yes is used once: the agent's record of which request's yes serves which session. A receipt (or the
// in-process vouch of `share --port`) opens exactly one session id; a second id for the same yes, a session
// the host already saw end, or a receipt first shown long after it was signed, is refused. A standalone
// agent keeps the record in a file, so its live sessions survive its restart and old receipts stay spent.
import fs from "node:fs";
import path from "node:path";
import { logger } from "../log.ts";

const log = logger("agent");
/** Yeses and ended sessions remembered; the oldest go first (a session cannot outlive its guest certificate). */
const REMEMBERED = 10_000;
/**
 * How old a receipt may be when the agent first hears of its session: the approval prompt's 2 minutes, plus
 * the coordinator's grace for an agent that is reconnecting (2 minutes), plus slack for clocks.
 */
export const FIRST_SIGHT_MAX_AGE_MS = 5 * 60_000;
/** File entries older than this are dropped when the file is read (no session lives past its 12 h certificate). */
const FILE_KEEP_MS = 24 * 3600_000;

type Line = { r: string; s: string; at: number } | { ended: string; at: number };

export class YesBook {
  /** The in-process vouch: request id -> the guest key the host said yes to here (its one session: `used`). */
  private readonly grants = new Map<string, string>();
  /** request id -> the one session id its yes opened. */
  private readonly used = new Map<string, string>();
  private readonly ended = new Set<string>();

  constructor(private readonly file?: string) {
    if (file) this.load(file, Date.now());
  }

  /** The host said yes to this request for this guest key, in this process. */
  grant(requestId: string, guestSpki: string): void {
    cap(this.grants);
    this.grants.set(requestId, guestSpki);
  }

  /** Whether the host said yes in this process to this request for this guest key (claim then spends it on one session). */
  vouched(requestId: string | undefined, guestSpki: string): boolean {
    return requestId !== undefined && this.grants.get(requestId) === guestSpki;
  }

  /**
   * Why this yes cannot open this session (or undefined, and it is now bound to it): the yes already opened
   * another session, the session already ended, or the yes is too old to be opening its first.
   */
  claim(o: { requestId: string; sessionId: string; signedAt?: number }, now: number): string | undefined {
    if (this.ended.has(o.sessionId)) return `session ${o.sessionId} already ended; an approval is not used twice`;
    const bound = this.used.get(o.requestId);
    if (bound === o.sessionId) return undefined;
    if (bound !== undefined)
      return `the host's yes to request ${o.requestId} already opened session ${bound}; it does not open another`;
    if (o.signedAt !== undefined && o.signedAt < now - FIRST_SIGHT_MAX_AGE_MS)
      return `the approval was signed ${Math.round((now - o.signedAt) / 1000)}s ago and this agent never served it; an old approval does not open a new session`;
    cap(this.used);
    this.used.set(o.requestId, o.sessionId);
    this.write({ r: o.requestId, s: o.sessionId, at: now });
    return undefined;
  }

  /** The session is over: it is never served again, whatever the coordinator says later. */
  end(sessionId: string, now = Date.now()): void {
    if (this.ended.has(sessionId)) return;
    if (this.ended.size >= REMEMBERED) this.ended.delete(this.ended.values().next().value!);
    this.ended.add(sessionId);
    this.write({ ended: sessionId, at: now });
  }

  private write(line: Line): void {
    if (!this.file) return;
    try {
      fs.appendFileSync(this.file, `${JSON.stringify(line)}\n`, { mode: 0o600 });
    } catch (err) {
      log.warn(`could not record a used approval in ${this.file}: ${(err as Error).message}`);
    }
  }

  /** Reads the record, keeping the last day of it, and writes it back compacted. */
  private load(file: string, now: number): void {
    let text = "";
    try {
      text = fs.readFileSync(file, "utf8");
    } catch {
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    }
    const kept: Line[] = [];
    for (const raw of text.split("\n")) {
      let l: Line;
      try {
        l = JSON.parse(raw) as Line;
      } catch {
        continue; // a torn last line after a crash
      }
      if (typeof l?.at !== "number" || l.at < now - FILE_KEEP_MS) continue;
      if ("ended" in l && typeof l.ended === "string") this.ended.add(l.ended);
      else if ("r" in l && typeof l.r === "string" && typeof l.s === "string") this.used.set(l.r, l.s);
      else continue;
      kept.push(l);
    }
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, kept.map((l) => `${JSON.stringify(l)}\n`).join(""), { mode: 0o600 });
    fs.renameSync(tmp, file);
  }
}

function cap(m: Map<string, string>): void {
  if (m.size >= REMEMBERED) m.delete(m.keys().next().value!);
}
