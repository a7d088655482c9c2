// The host's side of consent: shows each request as a prompt, one at a time, and sends the answer.
import readline from "node:readline";
import { errorMessage } from "../errors.ts";
import { logger, setPrompt } from "../log.ts";
import { describeScope, type Scope } from "../wire/scope.ts";
import { signReceipt } from "../wire/receipt.ts";
import { ANSWER_HELP, parseAnswer } from "./answer.ts";
import type { ControlClient } from "../wire/control-client.ts";
import { SHELL_TARGET, type FrameOf, type ServerFrame } from "../wire/protocol.ts";
import { escapeUnsafe, quoteText, showName } from "../wire/untrusted-text.ts";
import type { CodeKeeper } from "../host/code-keeper.ts";
import { osUser } from "./ui.ts";
import { askIdentity, type KnownGuests } from "../host/known-guests.ts";
import { recognitionLines } from "./guest-recognition.ts";

/** What the approver needs for codes: the keeper of their secret halves, the coordinator's address for invites, --verify. */
export interface ApproverCodes {
  keeper: CodeKeeper;
  address: string;
  verify?: boolean;
  /** The host's private key: every answer goes out with a receipt signed by it (wire/receipt.ts). */
  hostKeyPem?: string;
  /** The guests this host has approved before (known_guests); absent: every guest is shown without history. */
  known?: KnownGuests;
}

type Ask = FrameOf<ServerFrame, "ask">;
const log = logger("share");

export class Approver {
  private readonly queue: Ask[] = [];
  private current: Ask | undefined;
  private rl: readline.Interface | undefined;
  /** While the host's terminal is attached to a shared shell, prompts wait and keystrokes go to the shell. */
  private suspended = false;
  /** Requests whose guest proved it holds our code, with the string to compare (`--verify`). */
  private readonly verified = new Map<string, string>();
  /** Lines typed while no request waits, for another part of this terminal (the live view); true when it took the line. */
  keys?: (line: string) => boolean;

  constructor(
    private client: ControlClient,
    private readonly shareId: string,
    private readonly codes: ApproverCodes,
    private readonly what: "port" | "shell" | "shell-watched" | "shell-read-only" = "port",
  ) {}

  start(): void {
    this.listen();
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
    if (this.current || this.queue.length)
      process.stderr.write(
        `\n  ${this.queue.length + (this.current ? 1 : 0)} waiting request(s) were cancelled: the connection to the coordinator dropped\n`,
      );
    this.current = undefined;
    this.queue.length = 0;
  }

  /** Carries on over a new connection after a reconnect. */
  rebind(client: ControlClient): void {
    this.pause();
    this.client = client;
    this.listen();
  }

  private listen(): void {
    this.client.on("ask", (f) => {
      // Checked before anything else, code or not: a guest whose identity does not hold is never a normal prompt.
      const id = askIdentity(f);
      if (id.problem) {
        process.stderr.write(
          `\n  wrong identity: ${showName(f.guest.name)} asked with an identity key whose signature does not hold (${id.problem}); refused, nobody was connected\n`,
        );
        this.decide(f, { allow: false, reason: "the host could not verify your identity key" });
        return;
      }
      if (f.pake) {
        // A code request is not shown until the guest proves it holds the whole code (see "confirm").
        const answer = this.codes.keeper.answer(f);
        if (answer) this.client.send(answer);
        else
          process.stderr.write(
            `\n  a guest used code ${f.pake.nameplate}-????, which this terminal did not make or has already used: not shown here\n`,
          );
        return;
      }
      this.enqueue(f);
    });
    this.client.on("confirm", (f) => {
      const c = this.codes.keeper.confirm(f);
      if (!c) return;
      if (c.ok) {
        this.verified.set(f.requestId, c.verify);
        return this.enqueue(c.ask);
      }
      process.stderr.write(
        `\n  wrong code: ${showName(c.ask.guest.name)} tried ${c.code} with the wrong second half; the code is burnt and nobody was connected (make a new one with c + Enter)\n`,
      );
      if (f.tag !== undefined)
        this.client.send({ t: "decision", requestId: f.requestId, allow: false, mismatch: true });
    });
    this.client.on("cancel", (f) => {
      this.verified.delete(f.requestId);
      if (this.current?.requestId === f.requestId) {
        process.stderr.write(`\n  request ${f.requestId} is no longer waiting: ${f.reason}\n`);
        this.current = undefined;
        this.showNext();
      } else {
        const i = this.queue.findIndex((q) => q.requestId === f.requestId);
        if (i >= 0) {
          const [gone] = this.queue.splice(i, 1);
          // A withdrawn request that was waiting behind the one on screen is said too, and the question redrawn.
          const now = this.current;
          process.stderr.write(
            `\n  ${showName(gone!.guest.name)}'s waiting request ${f.requestId} was withdrawn: ${f.reason}\n${now ? this.question(now, now.target === SHELL_TARGET, this.secsLeft(now)) : ""}`,
          );
        }
      }
    });
    this.client.on("session", (f) => log.info(`session ${f.sessionId} open: ${showName(f.guest.name)} -> ${f.target}`));
    this.client.on("closed", (f) => log.info(`session ${f.sessionId} ended: ${f.reason}`));
  }

  private enqueue(f: Ask): void {
    this.queue.push(f);
    if (this.current && !this.suspended)
      process.stderr.write(
        `\n  ${showName(f.guest.name)} is asking too: ${this.queue.length} more waiting after this one\n${this.question(this.current, this.current.target === SHELL_TARGET, this.secsLeft(this.current))}`,
      );
    if (this.suspended)
      process.stderr.write(
        `\r\n[tessera] ${showName(f.guest.name)} is asking for access; the prompt shows once this session ends (Ctrl-] ends it)\r\n`,
      );
    else if (!this.current) this.showNext();
  }

  /** Asks the coordinator for a fresh single-use code and prints it on a line of its own. */
  async mint(target?: string): Promise<void> {
    this.client.send({ t: "mint", shareId: this.shareId, target });
    const f = await this.client.next("code");
    const code = this.codes.keeper.mint(f.nameplate, f.expiresAt);
    console.log(`code: ${code}`);
    console.log(`invite: tessera join ${this.codes.address}/${code}`);
    // Two short lines: they fit an 80-column terminal.
    process.stderr.write(
      `  the guest runs the invite line, adding --reason "..."\n  single use, valid ${validFor(f.expiresAt - Date.now())}; c + Enter makes another code\n`,
    );
    // The host hears when a code lapses unused (one timer a code; the coordinator caps live codes).
    const lapse = setTimeout(
      () => {
        // Still held a moment after its expiry: nobody used it (a used code's secret is taken at once).
        if (this.codes.keeper.holds(f.nameplate, f.expiresAt - 1))
          process.stderr.write(`\n  code ${f.nameplate}-???? expired unused; c + Enter makes another\n`);
      },
      Math.max(0, f.expiresAt - Date.now()) + 100,
    );
    lapse.unref?.();
  }

  stop(): void {
    this.rl?.close();
  }

  private showNext(): void {
    if (this.suspended) return;
    const f = this.queue.shift();
    this.current = f;
    setPrompt(undefined);
    if (!f) return;
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
          : "  code    not verified by a code: only the coordinator vouches for this guest\n") +
        (this.codes.verify && this.verified.has(f.requestId)
          ? `  verify  ${this.verified.get(f.requestId)}   (the guest sees the same with --verify)\n`
          : "") +
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
    return recognitionLines(id, id ? this.codes.known?.recognise(id, f.guest.name) : undefined, f.guest.name);
  }

  /** Sends an answer, signed with the host key when there is one (wire/receipt.ts). */
  private decide(f: Ask, a: { allow: boolean; scope?: Scope; reason?: string }, guestId?: string): void {
    const receipt = this.codes.hostKeyPem
      ? signReceipt(this.codes.hostKeyPem, {
          requestId: f.requestId,
          shareId: f.shareId,
          guestKey: f.guest.spki,
          target: f.target,
          decision: a.allow ? "allow" : "deny",
          ...(a.allow && a.scope ? { scope: a.scope } : {}),
          at: Date.now(),
          ...(guestId ? { guestId } : {}),
        })
      : undefined;
    this.client.send({ t: "decision", requestId: f.requestId, ...a, ...(receipt ? { receipt } : {}) });
  }

  private onLine(line: string): void {
    const f = this.current;
    if (!f) {
      if (this.keys?.(line)) return;
      if (/^c(ode)?$/i.test(line)) this.mint().catch((err) => log.error(errorMessage(err)));
      else if (line) process.stderr.write("  no request is waiting; type c + Enter to mint another code\n");
      return;
    }
    const a = parseAnswer(line, f.target === SHELL_TARGET, { unwatched: this.what === "shell" });
    if ("help" in a || "problem" in a) {
      process.stderr.write(
        `${"help" in a ? ANSWER_HELP : `  ${a.problem}`}\n${this.question(f, f.target === SHELL_TARGET, Math.max(0, Math.round((f.deadline - Date.now()) / 1000)))}`,
      );
      return;
    }
    if (a.allow) this.codes.keeper.approve(f.guest.spki);
    this.verified.delete(f.requestId);
    const { id } = askIdentity(f);
    if (a.allow && id) {
      try {
        this.codes.known?.visit(id, f.guest.name);
      } catch (err) {
        log.warn(`could not record this visit in known_guests: ${errorMessage(err)}`);
      }
    }
    this.decide(f, a, id);
    const scoped = a.allow && a.scope ? ` (${describeScope(a.scope)})` : "";
    process.stderr.write(
      a.allow
        ? `  approved ${showName(f.guest.name)}${scoped}\n`
        : `  denied ${showName(f.guest.name)}${a.reason ? `: they are told "${a.reason}"` : ""}\n`,
    );
    this.current = undefined;
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
