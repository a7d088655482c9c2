// The host's terminal for consent: shows each request host/consent.ts hands it as a prompt, one at a time,
// and passes the typed answer to consent.decide(id, answer). No protocol lives here.
import readline from "node:readline";
import { errorMessage } from "../errors.ts";
import { logger, setPrompt } from "../log.ts";
import { describeScope } from "../wire/scope.ts";
import { ANSWER_HELP, parseAnswer } from "./answer.ts";
import { SHELL_TARGET } from "../wire/protocol.ts";
import { escapeUnsafe, quoteText, showName } from "../wire/untrusted-text.ts";
import { osUser } from "./ui.ts";
import { askIdentity, type KnownGuests } from "../host/known-guests.ts";
import { HostConsent, type Ask, type HostConsentOptions, type Waiting } from "../host/consent.ts";
import type { ControlClient } from "../wire/control-client.ts";
import { recognitionLines } from "./guest-recognition.ts";

/** What the terminal shows besides the request: the coordinator's address for invites, --verify, known_guests. */
export interface ApproverView {
  address: string;
  verify?: boolean;
  known?: KnownGuests;
  /** Told of each new request as it is queued (`tessera approve --exec`: a desktop notification). */
  onAsk?: (w: Waiting) => void;
}

const log = logger("share");

export class Approver {
  private readonly queue: Waiting[] = [];
  private current: Waiting | undefined;
  private rl: readline.Interface | undefined;
  /** While the host's terminal is attached to a shared shell, prompts wait and keystrokes go to the shell. */
  private suspended = false;
  /** Lines typed while no request waits, for another part of this terminal (the live view); true when it took the line. */
  keys?: (line: string) => boolean;

  constructor(
    readonly consent: HostConsent,
    private readonly view: ApproverView,
    private readonly what: "port" | "shell" | "shell-watched" | "shell-read-only" = "port",
  ) {}

  /** The host's consent on this connection, with this terminal as the one that hears of its requests. */
  static open(
    client: ControlClient,
    o: HostConsentOptions,
    view: ApproverView,
    what?: "port" | "shell" | "shell-watched" | "shell-read-only",
  ): Approver {
    let a: Approver | undefined;
    const consent = new HostConsent(o, {
      ask: (w) => {
        a?.enqueue(w);
        view.onAsk?.(w);
      },
      gone: (id, reason) => a?.gone(id, reason),
      notice: (line) => process.stderr.write(`\n  ${line}\n`),
      info: (line) => log.info(line),
    });
    a = new Approver(consent, view, what);
    consent.bind(client);
    return a;
  }

  start(): void {
    this.openInput();
  }

  private openInput(): void {
    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    this.rl = rl;
    rl.on("line", (line) => this.onLine(line.trim()));
    rl.on("close", () => {
      if (this.rl === rl && !process.stdin.isTTY)
        log.warn("standard input closed: requests can no longer be answered here and will expire");
    });
  }

  /** Hands the terminal to something else (a watched shell); a prompt on screen is shown again on resume. */
  suspend(): void {
    if (this.current) this.queue.unshift(this.current);
    this.current = undefined;
    this.suspended = true;
    const rl = this.rl;
    this.rl = undefined;
    rl?.close();
  }

  resume(): void {
    if (!this.suspended) return;
    this.suspended = false;
    this.openInput();
    this.showNext();
  }

  /** The connection dropped: whatever was waiting is void (the coordinator denies it, the guest may ask again). */
  pause(): void {
    const n = this.consent.lost();
    if (n)
      process.stderr.write(`\n  ${n} waiting request(s) were cancelled: the connection to the coordinator dropped\n`);
    this.current = undefined;
    this.queue.length = 0;
  }

  /** Carries on over a new connection after a reconnect. */
  rebind(client: ControlClient): void {
    this.pause();
    this.consent.bind(client);
  }

  private gone(requestId: string, reason: string): void {
    if (this.current?.ask.requestId === requestId) {
      process.stderr.write(`\n  request ${requestId} is no longer waiting: ${reason}\n`);
      this.current = undefined;
      this.showNext();
    } else {
      const i = this.queue.findIndex((q) => q.ask.requestId === requestId);
      if (i >= 0) {
        const [gone] = this.queue.splice(i, 1);
        // A withdrawn request that was waiting behind the one on screen is said too, and the question redrawn.
        const now = this.current?.ask;
        process.stderr.write(
          `\n  ${showName(gone!.ask.guest.name)}'s waiting request ${requestId} was withdrawn: ${reason}\n${now ? this.question(now, now.target === SHELL_TARGET, this.secsLeft(now)) : ""}`,
        );
      }
    }
  }

  private enqueue(w: Waiting): void {
    this.queue.push(w);
    const now = this.current?.ask;
    if (now && !this.suspended)
      process.stderr.write(
        `\n  ${showName(w.ask.guest.name)} is asking too: ${this.queue.length} more waiting after this one\n${this.question(now, now.target === SHELL_TARGET, this.secsLeft(now))}`,
      );
    if (this.suspended)
      process.stderr.write(
        `\r\n[tessera] ${showName(w.ask.guest.name)} is asking for access; the prompt shows once this session ends (Ctrl-] ends it)\r\n`,
      );
    else if (!this.current) this.showNext();
  }

  /** Asks for a fresh single-use code and prints it on a line of its own. */
  async mint(target?: string): Promise<void> {
    const { code, expiresAt } = await this.consent.mint(target);
    console.log(`code: ${code}`);
    console.log(`invite: tessera join ${this.view.address}/${code}`);
    // Two short lines: they fit an 80-column terminal.
    process.stderr.write(
      `  the guest runs the invite line, adding --reason "..."\n  single use, valid ${validFor(expiresAt - Date.now())}; c + Enter makes another code\n`,
    );
    // The host hears when a code lapses unused (one timer a code; the coordinator caps live codes).
    const lapse = setTimeout(
      () => {
        // Still held a moment after its expiry: nobody used it (a used code's secret is taken at once).
        if (this.consent.holds(code, expiresAt - 1))
          process.stderr.write(`\n  code ${code.slice(0, 4)}-???? expired unused; c + Enter makes another\n`);
      },
      Math.max(0, expiresAt - Date.now()) + 100,
    );
    lapse.unref?.();
  }

  stop(): void {
    this.rl?.close();
  }

  private showNext(): void {
    if (this.suspended) return;
    const w = this.queue.shift();
    this.current = w;
    setPrompt(undefined);
    if (!w) return;
    const f = w.ask;
    const secs = Math.max(0, Math.round((f.deadline - Date.now()) / 1000));
    const shell = f.target === SHELL_TARGET;
    const wants = shell
      ? `an interactive SHELL on this machine as user ${osUser()}${this.what === "shell-read-only" ? " (read-only: you type, they watch)" : ""}`
      : f.target;
    // Name and reason are the guest's own words: escaped and delimited, so they cannot draw lines of their own.
    const name = showName(f.guest.name);
    const more = this.queue.length ? ` (${this.queue.length} more waiting)` : "";
    process.stderr.write(
      `\n── access request ${f.requestId}${more} ──\n` +
        `  guest   ${name}\n` +
        `  from    ${escapeUnsafe(f.guest.addr)}\n` +
        `  wants   ${wants}\n` +
        `  reason  ${f.reason ? quoteText(f.reason) : "(none given)"}\n` +
        `  key     ${f.guest.spki} (this join's TLS key)\n` +
        this.recognition(f) +
        (f.pake
          ? `  code    this guest holds the code you gave out (${f.pake.nameplate}-????)\n`
          : "  code    not verified by a code: only the coordinator vouches for this guest (--allow-requests-by-id)\n") +
        (this.view.verify && w.verify ? `  verify  ${w.verify}   (the guest sees the same with --verify)\n` : "") +
        `  answer  y, n, or scoped: y 15m, y 1${shell ? ", ro" : ""}, n REASON (? explains)\n` +
        this.question(f, shell, secs),
    );
    setPrompt(this.question(f, shell, secs));
  }

  private secsLeft(f: Ask): number {
    return Math.max(0, Math.round((f.deadline - Date.now()) / 1000));
  }

  private question(f: Ask, shell: boolean, secs: number): string {
    // The guest's name is their own word, shown escaped; the OS user is ours, named as such.
    return `Allow ${showName(f.guest.name)} ${shell ? `a SHELL as your user ${osUser()}` : `to reach ${f.target}`}? [y/N] (${secs}s to answer) `;
  }

  /** What known_guests says of this guest, for the prompt. */
  private recognition(f: Ask): string {
    const { id } = askIdentity(f);
    return recognitionLines(id, id ? this.view.known?.recognise(id, f.guest.name) : undefined, f.guest.name);
  }

  private onLine(line: string): void {
    const w = this.current;
    if (!w) {
      if (this.keys?.(line)) return;
      if (/^c(ode)?$/i.test(line)) this.mint().catch((err) => log.error(errorMessage(err)));
      else if (line) process.stderr.write("  no request is waiting; type c + Enter to mint another code\n");
      return;
    }
    const f = w.ask;
    const a = parseAnswer(line, f.target === SHELL_TARGET, { unwatched: this.what === "shell" });
    if ("help" in a || "problem" in a) {
      process.stderr.write(
        `${"help" in a ? ANSWER_HELP : `  ${a.problem}`}\n${this.question(f, f.target === SHELL_TARGET, Math.max(0, Math.round((f.deadline - Date.now()) / 1000)))}`,
      );
      return;
    }
    this.current = undefined;
    try {
      this.consent.decide(f.requestId, a);
      const scoped = a.allow && a.scope ? ` (${describeScope(a.scope)})` : "";
      process.stderr.write(
        a.allow
          ? `  approved ${showName(f.guest.name)}${scoped}\n`
          : `  denied ${showName(f.guest.name)}${a.reason ? `: they are told "${a.reason}"` : ""}\n`,
      );
    } catch (err) {
      process.stderr.write(`  could not answer: ${errorMessage(err)}\n`);
    }
    this.showNext();
  }
}

/** A code's lifetime as the host reads it: seconds below a minute ("valid 0 minutes" said nothing). */
export function validFor(ms: number): string {
  const secs = Math.max(0, Math.round(ms / 1000));
  if (secs < 60) return `${secs} second${secs === 1 ? "" : "s"}`;
  const mins = Math.round(secs / 60);
  return `${mins} minute${mins === 1 ? "" : "s"}`;
}
