// The host's half of codes: each code's secret half lives only in the process that minted it (or, for codes
// minted by `tessera mcp` on this machine, in a 0600 file under TESSERA_HOME), with what the host minted it for
// (share, target, the host's own expiry), and answers the guest's CPace share with those, never the coordinator's word.
import { hostRespond, tagsEqual, type PakeKeys } from "../pki/code-pake.ts";
import { identityFingerprint } from "../pki/identity.ts";
import { formatCode, generateSecret } from "../wire/codes.ts";
import type { ClientFrame, FrameOf, ServerFrame } from "../wire/protocol.ts";
import { claimSecretFile, type Minted, pruneSecretFiles } from "./secret-files.ts";

type Ask = FrameOf<ServerFrame, "ask">;
/** Most secrets and runs kept at once: far above the coordinator's cap on live codes per share. */
const MAX_KEPT = 1000;
/** The host's own cap on a code's life, whatever expiry the coordinator names (its default is 10 minutes). */
export const HOST_CODE_TTL_MS = 15 * 60_000;

export type Answered =
  | { ok: true; frame: FrameOf<ClientFrame, "pake">; code: string }
  /** Not ours (or used, or expired): nothing to say; mismatch: ours, but the ask is not what we minted it for. */
  | { ok: false; code: string; mismatch?: string; minted?: { shareId: string; target: string } };

export type Confirmation =
  | { ok: true; ask: Ask; verify: string; code: string; hostTag: string }
  | { ok: false; ask: Ask; code: string };

export class CodeKeeper {
  private readonly secrets = new Map<string, Minted>();
  private readonly runs = new Map<string, { ask: Ask; keys: PakeKeys; code: string }>();

  /** hostSpki: this host's own TLS key, the one guests will pin; dir: where `tessera mcp` leaves secrets for us. */
  constructor(
    private readonly hostSpki: string,
    private readonly dir?: string,
    now = Date.now(),
  ) {
    if (dir) pruneSecretFiles(dir, now);
  }

  /** A new code for a nameplate the coordinator handed out: the secret half is born (and stays) here. */
  mint(nameplate: string, o: { shareId: string; target: string; expiresAt: number }, now = Date.now()): string {
    const secret = generateSecret();
    this.prune(now);
    if (this.secrets.size >= MAX_KEPT) this.secrets.delete(this.secrets.keys().next().value!);
    this.secrets.set(nameplate, { ...o, secret, expiresAt: capExpiry(o.expiresAt, now) });
    return formatCode(nameplate + secret);
  }

  /**
   * The host's CPace answer to an ask for one of our codes: only the host's share, never its tag (the guest
   * confirms first). The target and share the host minted the code for go into the run, not the ask's.
   */
  answer(ask: Ask, now = Date.now()): Answered | undefined {
    if (!ask.pake) return undefined;
    const code = `${ask.pake.nameplate}-????`;
    const kept = this.take(ask.pake.nameplate, now);
    if (!kept) return { ok: false, code };
    if (kept.shareId !== ask.shareId || kept.target !== ask.target)
      return {
        ok: false,
        code,
        mismatch: `it was made for ${kept.target} on share ${kept.shareId}, but the request is for ${ask.target} on share ${ask.shareId}`,
        minted: { shareId: kept.shareId, target: kept.target },
      };
    const r = hostRespond(
      ask.pake.nameplate,
      kept.secret,
      ask.pake.sid,
      ask.pake.msg,
      {
        spki: ask.guest.spki,
        name: ask.guest.name,
        reason: ask.reason,
        identity: ask.identity && identityFingerprint(ask.identity.pub),
      },
      { spki: this.hostSpki, target: kept.target },
    );
    if (!r) return { ok: false, code, mismatch: "the guest's share of the code check does not decode" };
    if (this.runs.size >= MAX_KEPT) this.runs.delete(this.runs.keys().next().value!);
    this.runs.set(ask.requestId, { ask, keys: r.keys, code });
    return { ok: true, frame: { t: "pake", requestId: ask.requestId, msg: r.msg, hostSpki: this.hostSpki }, code };
  }

  /** The guest's confirmation: ok (it holds the code, and everything in the ask is what it sent) or not. Once. */
  confirm(f: FrameOf<ServerFrame, "confirm">): Confirmation | undefined {
    const run = this.runs.get(f.requestId);
    if (!run) return undefined;
    this.runs.delete(f.requestId);
    return tagsEqual(f.tag, run.keys.guestTag)
      ? { ok: true, ask: run.ask, verify: run.keys.verify, code: run.code, hostTag: run.keys.hostTag }
      : { ok: false, ask: run.ask, code: run.code };
  }

  /** Whether this code's secret half is still here, unused and unexpired (for telling the host a code lapsed unused). */
  holds(nameplate: string, now = Date.now()): boolean {
    const s = this.secrets.get(nameplate);
    return !!s && s.expiresAt > now;
  }

  /** A run that ends before the guest confirmed (withdrawn, expired, lost): its code, once, for the host to hear of. */
  abandon(requestId: string): string | undefined {
    const run = this.runs.get(requestId);
    this.runs.delete(requestId);
    return run?.code;
  }

  /** Every run still waiting for its confirmation (the connection dropped: each was a guess, maybe). */
  abandonAll(): string[] {
    const codes = [...this.runs.values()].map((r) => r.code);
    this.runs.clear();
    return codes;
  }

  /** The minted code, once: from memory, or from a file `tessera mcp` left (claimed by rename, so one process gets it). */
  private take(nameplate: string, now: number): Minted | undefined {
    const kept = this.secrets.get(nameplate);
    if (kept) {
      this.secrets.delete(nameplate);
      return kept.expiresAt > now ? kept : undefined;
    }
    const file = this.dir ? claimSecretFile(this.dir, nameplate) : undefined;
    return file && file.expiresAt > now ? { ...file, expiresAt: capExpiry(file.expiresAt, now) } : undefined;
  }

  private prune(now: number): void {
    for (const [k, v] of this.secrets) if (v.expiresAt <= now) this.secrets.delete(k);
  }
}

/** The earlier of the coordinator's word and the host's own cap. */
export function capExpiry(expiresAt: number, now: number): number {
  return Math.min(expiresAt, now + HOST_CODE_TTL_MS);
}

export { leaveSecret } from "./secret-files.ts";
