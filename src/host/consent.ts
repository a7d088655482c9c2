// The host's half of consent, without any terminal: it takes each ask, answers a code's PAKE with what the
// host minted it for, checks the guest's confirmation before it confirms back, queues the request, and
// records a decision with its signed receipt, the known-guests visit and the one-shot vouch. A front end
// (cli/approver.ts, a test, a later approver) shows what it is handed and calls decide(id, answer).
// The three roles are symmetric: guest/code-check <-> coordinator/consent <-> host/consent.
import { TesseraError, errorMessage } from "../errors.ts";
import { signReceipt } from "../wire/receipt.ts";
import type { Delegation } from "../pki/delegation.ts";
import type { ControlClient } from "../wire/control-client.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";
import type { Scope } from "../wire/scope.ts";
import { showName } from "../wire/untrusted-text.ts";
import { capExpiry, type CodeKeeper } from "./code-keeper.ts";
import { askIdentity, type KnownGuests } from "./known-guests.ts";
import type { YesBook } from "./yes-book.ts";

export type Ask = FrameOf<ServerFrame, "ask">;
export type Decision = { allow: true; scope?: Scope } | { allow: false; reason?: string };

/** A request for the host to answer: the ask, and for a code request the string both sides may compare. */
export interface Waiting {
  ask: Ask;
  /** Set when the guest proved it holds the code (the PAKE confirmed both ways). */
  verify?: string;
}

/** What the host is told; every line is plain text, the guest's words already escaped. */
export interface ConsentEvents {
  /** A request to put before the host. */
  ask(w: Waiting): void;
  /** A request shown earlier no longer waits. */
  gone(requestId: string, reason: string): void;
  /** Something the host must read now: a wrong, abandoned or refused code, a refused request. */
  notice(line: string): void;
  /** The coordinator says a session opened or ended. */
  info?(line: string): void;
}

export interface HostConsentOptions {
  shareId: string;
  keeper: CodeKeeper;
  /** The host's private key: every answer goes out with a receipt signed by it (wire/receipt.ts). */
  hostKeyPem?: string;
  /** A delegated approver (`tessera approve`): hostKeyPem is its approver key, and each receipt carries this. */
  delegation?: Delegation;
  /** The guests this host has approved before (known_guests). */
  known?: KnownGuests;
  /** The share takes requests by id (`--allow-requests-by-id`): only then is an ask without a code shown. */
  requestsById: boolean;
  /** Where a yes given here is granted, one-shot, for the agent in this process (yes-book.ts). */
  yes?: YesBook;
  /** Failed or abandoned code checks an hour before this host stops answering them (default FAIL_BUDGET). */
  failBudget?: number;
}

/** Failed or abandoned PAKE runs in an hour after which the host answers none (each was one guess at a code). */
export const FAIL_BUDGET = 5;
const FAIL_WINDOW_MS = 3600_000;
/** Requests waiting for the host at once (the coordinator caps a share's at 16). */
const MAX_WAITING = 256;
export const NO_CODE_REFUSAL = "this share takes requests only with a code";

export class HostConsent {
  private client: ControlClient | undefined;
  private readonly waiting = new Map<string, Ask>();
  private readonly failures: number[] = [];

  constructor(
    private readonly o: HostConsentOptions,
    private readonly events: ConsentEvents,
  ) {}

  /** Takes asks from this connection (the first, or a new one after a reconnect). */
  bind(client: ControlClient): void {
    this.client = client;
    client.on("ask", (f) => this.onAsk(client, f));
    client.on("confirm", (f) => this.onConfirm(client, f));
    client.on("cancel", (f) => this.onCancel(f.requestId, f.reason));
    client.on("session", (f) =>
      this.events.info?.(`session ${f.sessionId} open: ${showName(f.guest.name)} -> ${f.target}`),
    );
    client.on("closed", (f) => this.events.info?.(`session ${f.sessionId} ended: ${f.reason}`));
  }

  /** The connection dropped: whatever waited is void (the coordinator denies it); an unconfirmed run was a guess. */
  lost(): number {
    for (const code of this.o.keeper.abandonAll()) this.abandoned(code, "the connection to the coordinator dropped");
    const n = this.waiting.size;
    this.waiting.clear();
    return n;
  }

  /** The host's answer: signed, sent, and for a yes granted once to the agent here and recorded in known_guests. */
  decide(requestId: string, d: Decision): Ask {
    const ask = this.waiting.get(requestId);
    if (!ask) throw new TesseraError("no_request", `request ${requestId} is not waiting for an answer`);
    this.waiting.delete(requestId);
    const { id } = askIdentity(ask);
    if (d.allow) {
      this.o.yes?.grant(ask.requestId, ask.guest.spki);
      if (id) {
        try {
          this.o.known?.visit(id, ask.guest.name);
        } catch (err) {
          this.events.notice(`could not record this visit in known_guests: ${errorMessage(err)}`);
        }
      }
    }
    this.send(ask, d, id);
    return ask;
  }

  /** Asks the coordinator for a fresh code; its secret half, share and target stay here. */
  async mint(target?: string): Promise<{ code: string; expiresAt: number; target: string }> {
    const c = this.connected();
    c.send({ t: "mint", shareId: this.o.shareId, target });
    const f = await c.next("code");
    const code = this.o.keeper.mint(f.nameplate, { shareId: this.o.shareId, target: f.target, expiresAt: f.expiresAt });
    return { code, expiresAt: capExpiry(f.expiresAt, Date.now()), target: f.target };
  }

  /** Whether a code minted here is still unused and unexpired (a front end tells the host when one lapses). */
  holds(code: string, now = Date.now()): boolean {
    return this.o.keeper.holds(code.slice(0, 4), now);
  }

  private onAsk(c: ControlClient, f: Ask): void {
    // Checked before anything else, code or not: a guest whose identity does not hold is never a normal prompt.
    const id = askIdentity(f);
    if (id.problem) {
      this.events.notice(
        `wrong identity: ${showName(f.guest.name)} asked with an identity key whose signature does not hold (${id.problem}); refused, nobody was connected`,
      );
      return this.send(f, { allow: false, reason: "the host could not verify your identity key" }, undefined, c);
    }
    if (f.shareId !== this.o.shareId) {
      this.events.notice(
        `the coordinator sent a request for share ${f.shareId}, not this one (${this.o.shareId}): refused`,
      );
      return this.send(f, { allow: false, reason: "that request is not for this share" }, undefined, c);
    }
    if (!f.pake) {
      if (this.o.requestsById) return this.enqueue({ ask: f });
      // A coordinator that strips the code from a redeem gets a refusal, loudly, never a prompt.
      this.events.notice(
        `the coordinator sent a request without a code (from ${showName(f.guest.name)}, for ${f.target}); this share takes none: refused`,
      );
      return this.send(f, { allow: false, reason: NO_CODE_REFUSAL }, undefined, c);
    }
    const code = `${f.pake.nameplate}-????`;
    if (this.spent()) {
      this.events.notice(
        `code ${code} was not checked: ${this.failures.length} code checks failed or were abandoned in the last hour, so this host answers none until that count drops; refused`,
      );
      return this.send(
        f,
        { allow: false, reason: "the host is not checking codes right now; ask again later" },
        undefined,
        c,
      );
    }
    const r = this.o.keeper.answer(f);
    if (!r) return;
    if (r.ok) return c.send(r.frame);
    if (!r.mismatch) {
      this.events.notice(
        `a guest used code ${code}, which this terminal did not make or has already used: not shown here`,
      );
      return;
    }
    this.failed();
    this.events.notice(`code ${code} was refused: ${r.mismatch}; the code is burnt and nobody was connected`);
    // The no is signed for what the host minted the code for: the request the code really opened.
    const minted = r.minted ? { ...f, ...r.minted } : f;
    this.send(minted, { allow: false, reason: "the host did not make this code for this request" }, undefined, c);
  }

  private onConfirm(c: ControlClient, f: FrameOf<ServerFrame, "confirm">): void {
    const r = this.o.keeper.confirm(f);
    if (!r) return;
    if (r.ok) {
      // The guest proved the code first; only now does the host prove it back.
      c.send({ t: "confirmed", requestId: f.requestId, tag: r.hostTag });
      return this.enqueue({ ask: r.ask, verify: r.verify });
    }
    this.failed();
    this.events.notice(
      `wrong code: ${showName(r.ask.guest.name)} tried ${r.code} with the wrong second half; the code is burnt and nobody was connected (make a new one with c + Enter)`,
    );
    if (f.tag !== undefined) c.send({ t: "decision", requestId: f.requestId, allow: false, mismatch: true });
  }

  private onCancel(requestId: string, reason: string): void {
    const code = this.o.keeper.abandon(requestId);
    if (code) this.abandoned(code, reason);
    if (this.waiting.delete(requestId)) this.events.gone(requestId, reason);
  }

  private abandoned(code: string, why: string): void {
    this.failed();
    this.events.notice(
      `code ${code} was tried and abandoned (${why}): possibly a guess; the code is burnt and nobody was connected`,
    );
  }

  private enqueue(w: Waiting): void {
    if (this.waiting.size >= MAX_WAITING) {
      this.events.notice(
        `${MAX_WAITING} requests already wait here; refused one more from ${showName(w.ask.guest.name)}`,
      );
      return this.send(w.ask, { allow: false, reason: "the host has too many requests waiting" });
    }
    this.waiting.set(w.ask.requestId, w.ask);
    this.events.ask(w);
  }

  private failed(now = Date.now()): void {
    this.failures.push(now);
    this.trim(now);
  }

  private spent(now = Date.now()): boolean {
    this.trim(now);
    return this.failures.length >= (this.o.failBudget ?? FAIL_BUDGET);
  }

  private trim(now: number): void {
    while (this.failures.length && this.failures[0]! <= now - FAIL_WINDOW_MS) this.failures.shift();
  }

  private connected(c = this.client): ControlClient {
    if (!c) throw new TesseraError("disconnected", "not connected to the coordinator");
    return c;
  }

  /** Sends an answer, signed with the host key when there is one. */
  private send(f: Ask, d: Decision, guestId?: string, c = this.client): void {
    const receipt = this.o.hostKeyPem
      ? signReceipt(
          this.o.hostKeyPem,
          {
            requestId: f.requestId,
            shareId: f.shareId,
            guestKey: f.guest.spki,
            target: f.target,
            decision: d.allow ? "allow" : "deny",
            ...(d.allow && d.scope ? { scope: d.scope } : {}),
            at: Date.now(),
            ...(guestId ? { guestId } : {}),
          },
          this.o.delegation,
        )
      : undefined;
    this.connected(c).send({ t: "decision", requestId: f.requestId, ...d, ...(receipt ? { receipt } : {}) });
  }
}
