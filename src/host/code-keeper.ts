// The host's half of codes: each code's secret half lives only in the process that minted it (or, for codes
// minted by `tessera mcp` on this machine, in a 0600 file under TESSERA_HOME), and answers the guest's CPace
// share. It also remembers which guest keys this host approved, so the agent pins those and no others.
import fs from "node:fs";
import path from "node:path";
import { identityFingerprint } from "../pki/identity.ts";
import { hostRespond, tagsEqual, type PakeKeys } from "../pki/code-pake.ts";
import { formatCode, generateSecret, isNameplate } from "../wire/codes.ts";
import type { ClientFrame, FrameOf, ServerFrame } from "../wire/protocol.ts";

type Ask = FrameOf<ServerFrame, "ask">;
/** Most secrets and runs kept at once: far above the coordinator's cap on live codes per share. */
const MAX_KEPT = 1000;

export type Confirmation = { ok: true; ask: Ask; verify: string; code: string } | { ok: false; ask: Ask; code: string };

export class CodeKeeper {
  private readonly secrets = new Map<string, { secret: string; expiresAt: number }>();
  private readonly runs = new Map<string, { ask: Ask; keys: PakeKeys }>();
  private readonly approved = new Set<string>();

  /** hostSpki: this host's own TLS key, the one guests will pin; dir: where `tessera mcp` leaves secrets for us. */
  constructor(
    private readonly hostSpki: string,
    private readonly dir?: string,
  ) {}

  /** A new code for a nameplate the coordinator handed out: the secret half is born (and stays) here. */
  mint(nameplate: string, expiresAt: number): string {
    const secret = generateSecret();
    this.prune();
    if (this.secrets.size >= MAX_KEPT) this.secrets.delete(this.secrets.keys().next().value!);
    this.secrets.set(nameplate, { secret, expiresAt });
    return formatCode(nameplate + secret);
  }

  /** The host's CPace answer to an ask for one of our codes, or undefined if this process does not hold its secret. */
  answer(ask: Ask): FrameOf<ClientFrame, "pake"> | undefined {
    if (!ask.pake) return undefined;
    const secret = this.take(ask.pake.nameplate);
    if (!secret) return undefined;
    const r = hostRespond(
      ask.pake.nameplate,
      secret,
      ask.pake.sid,
      ask.pake.msg,
      {
        spki: ask.guest.spki,
        name: ask.guest.name,
        reason: ask.reason,
        identity: ask.identity && identityFingerprint(ask.identity.pub),
      },
      { spki: this.hostSpki, target: ask.target },
    );
    if (!r) return undefined;
    if (this.runs.size >= MAX_KEPT) this.runs.delete(this.runs.keys().next().value!);
    this.runs.set(ask.requestId, { ask, keys: r.keys });
    return { t: "pake", requestId: ask.requestId, msg: r.msg, tag: r.keys.hostTag, hostSpki: this.hostSpki };
  }

  /** The guest's confirmation: ok (it holds the code, and everything in the ask is what it sent) or not. */
  confirm(f: FrameOf<ServerFrame, "confirm">): Confirmation | undefined {
    const run = this.runs.get(f.requestId);
    if (!run) return undefined;
    this.runs.delete(f.requestId);
    const code = `${run.ask.pake!.nameplate}-????`;
    return tagsEqual(f.tag, run.keys.guestTag)
      ? { ok: true, ask: run.ask, verify: run.keys.verify, code }
      : { ok: false, ask: run.ask, code };
  }

  /** Whether this code's secret half is still here, unused and unexpired (for telling the host a code lapsed unused). */
  holds(nameplate: string, now = Date.now()): boolean {
    const s = this.secrets.get(nameplate);
    return !!s && s.expiresAt > now;
  }

  /** The host said yes to this guest key: the agent may serve it. */
  approve(guestSpki: string): void {
    if (this.approved.size >= MAX_KEPT) this.approved.delete(this.approved.values().next().value!);
    this.approved.add(guestSpki);
  }

  /** Whether the host approved this guest key here (a key the coordinator names on its own is refused). */
  approvedKey(guestSpki: string): boolean {
    return this.approved.has(guestSpki);
  }

  /** The secret half, once: from memory, or from a file `tessera mcp` left (then deleted). */
  private take(nameplate: string): string | undefined {
    const kept = this.secrets.get(nameplate);
    if (kept) {
      this.secrets.delete(nameplate);
      return kept.expiresAt > Date.now() ? kept.secret : undefined;
    }
    if (!this.dir || !isNameplate(nameplate)) return undefined;
    const file = path.join(this.dir, nameplate);
    try {
      const { secret, expiresAt } = JSON.parse(fs.readFileSync(file, "utf8")) as { secret: string; expiresAt: number };
      fs.rmSync(file, { force: true });
      return expiresAt > Date.now() && typeof secret === "string" ? secret : undefined;
    } catch {
      return undefined;
    }
  }

  private prune(): void {
    const now = Date.now();
    for (const [k, v] of this.secrets) if (v.expiresAt <= now) this.secrets.delete(k);
  }
}

/** For a minter in another process (`tessera mcp`): leaves the secret half where this machine's approver finds it. */
export function leaveSecret(dir: string, nameplate: string, expiresAt: number): string {
  const secret = generateSecret();
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dir, nameplate), JSON.stringify({ secret, expiresAt }), { mode: 0o600 });
  return formatCode(nameplate + secret);
}
