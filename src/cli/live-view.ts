// The host's live view while `tessera share` runs: the share's sessions from the coordinator's status
// frame, about once a second, as a panel kept in place at a terminal (or a plain line per state change
// without one), and the keys that act on them: k N ends session N, l lists, ? shows the keys.
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { ControlClient } from "../wire/control-client.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";
import type { Scope } from "../wire/scope.ts";
import type { Approver } from "./approver.ts";
import { KEYS_HELP, panelLines, plainLine, type LiveRow } from "./live-rows.ts";
import { PanelScreen } from "./live-screen.ts";

const log = logger("share");
const TICK_MS = 1000;
/** Sessions whose scope this terminal remembers (answered here); bounded like every other table. */
const MAX_REMEMBERED = 1000;

export interface LiveViewOptions {
  shareId: string;
  /** The connection to the coordinator now (it changes when the share reconnects). */
  client: () => ControlClient;
  approver: Approver;
  /** A panel kept in place (a terminal), or plain lines (a pipe, a log file). */
  tty: boolean;
}

export class LiveView {
  private rows: LiveRow[] = [];
  private idleTimeoutSec: number | undefined;
  private bound: ControlClient | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private screen: PanelScreen | undefined;
  /** Row numbers by session id: a session keeps its number while it lives, numbers are never reused. */
  private readonly numbers = new Map<string, number>();
  private nextNumber = 1;
  private readonly answered = new Map<string, { scope?: Scope; openedAt?: number }>();
  /** Without a terminal: each session's last state printed (streams, away), so only changes print. */
  private readonly printed = new Map<string, string>();

  constructor(private readonly o: LiveViewOptions) {}

  start(): void {
    if (this.o.tty) this.screen = new PanelScreen();
    this.o.approver.keys = (line) => this.key(line);
    this.tick();
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref?.();
  }

  stop(): void {
    clearInterval(this.timer);
    this.screen?.stop();
    this.screen = undefined;
  }

  private tick(): void {
    const c = this.o.client();
    if (c !== this.bound) this.bind(c);
    // With a ref, a refusal (the share gone a moment) is not taken for the answer to a mint waiting meanwhile.
    c.send({ t: "status", shareId: this.o.shareId, ref: "live-view" });
  }

  private bind(c: ControlClient): void {
    this.bound = c;
    c.on("status", (f) => {
      if (c === this.bound && f.shareId === this.o.shareId) this.update(f);
    });
    c.on("session", (f) => {
      if (this.answered.size >= MAX_REMEMBERED) this.answered.delete(this.answered.keys().next().value!);
      this.answered.set(f.sessionId, { scope: f.scope, openedAt: f.openedAt });
    });
    c.on("closed", (f) => {
      this.answered.delete(f.sessionId);
      this.printed.delete(f.sessionId);
      this.rows = this.rows.filter((r) => r.sessionId !== f.sessionId);
      this.numbers.delete(f.sessionId);
      this.render();
    });
  }

  private update(f: FrameOf<ServerFrame, "status">): void {
    const now = Date.now();
    this.idleTimeoutSec = f.idleTimeoutSec;
    const live = new Set(f.sessions.map((s) => s.sessionId));
    for (const id of [...this.numbers.keys()]) if (!live.has(id)) this.numbers.delete(id);
    for (const id of [...this.printed.keys()]) if (!live.has(id)) this.printed.delete(id);
    this.rows = f.sessions
      .map((s) => {
        let n = this.numbers.get(s.sessionId);
        if (n === undefined) this.numbers.set(s.sessionId, (n = this.nextNumber++));
        const a = this.answered.get(s.sessionId);
        return {
          n,
          sessionId: s.sessionId,
          guest: s.guest,
          target: s.target,
          streams: s.streams,
          up: s.up,
          down: s.down,
          idleSec: s.idleSec,
          away: s.away,
          path: s.path,
          scope: a?.scope,
          openedAt: a?.openedAt,
          seenAt: now,
        };
      })
      .sort((a, b) => a.n - b.n);
    this.render();
  }

  private render(): void {
    const now = Date.now();
    if (this.screen) return this.screen.show(panelLines(this.rows, now, this.idleTimeoutSec, process.stderr.columns));
    for (const r of this.rows) {
      const state = `${r.streams}|${r.away}|${r.path}`;
      if (this.printed.get(r.sessionId) === state) continue;
      this.printed.set(r.sessionId, state);
      log.info(plainLine(r, now, this.idleTimeoutSec));
    }
  }

  /** A line typed while no request waits: true when it is one of the view's keys. */
  private key(line: string): boolean {
    if (line === "?" || /^h(elp)?$/i.test(line)) {
      process.stderr.write(`${KEYS_HELP}\n`);
      return true;
    }
    if (/^l(ist)?$/i.test(line)) {
      const now = Date.now();
      process.stderr.write(
        this.rows.length
          ? `${this.rows.map((r) => `  ${plainLine(r, now, this.idleTimeoutSec)}`).join("\n")}\n`
          : "  no sessions right now\n",
      );
      return true;
    }
    const k = /^k(?:ill)?\s*(\S*)$/i.exec(line);
    if (!k) return false;
    const row = this.rows.find((r) => String(r.n) === k[1]);
    if (!row) {
      process.stderr.write(`  ${k[1] ? `no session ${k[1]}` : "say which session: k N"} (l lists them)\n`);
      return true;
    }
    try {
      this.o.client().send({ t: "end", sessionId: row.sessionId });
      process.stderr.write(`  ending session ${row.n} (${row.sessionId}); the others keep going\n`);
    } catch (err) {
      process.stderr.write(`  could not end session ${row.n}: ${errorMessage(err)}\n`);
    }
    return true;
  }
}
