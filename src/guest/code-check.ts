// The guest's half of a code: the nameplate goes to the coordinator, the secret half keys a CPace run with the
// host that minted the code. The guest confirms first; the host confirms back only if the guest's tag checked
// out, and that confirmation names the host key and target to pin; the approval must match them.
import { TesseraError } from "../errors.ts";
import { certInfo } from "../pki/index.ts";
import { receiptChainProblem } from "../wire/receipt-chain.ts";
import { guestStart, tagsEqual, type GuestClaims } from "../pki/code-pake.ts";
import { normalizeCode, splitCode } from "../wire/codes.ts";
import type { ControlClient } from "../wire/control-client.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";

export const CODE_MISMATCH = "the code did not match: nobody was connected";
/** How long the guest waits for the host's confirmation after sending its own: the host answers at once. */
export const CONFIRM_WAIT_MS = 2 * 60_000;

export interface CodeRun {
  /** The guest's CPace share, for the redeem frame (the secret half stays in here). */
  redeem: { code: string; pake: { sid: string; msg: string } };
  /** Waits for the host's answer and confirms; resolves with what the code proved, or rejects (the code is burnt). */
  confirm(
    client: ControlClient,
    pending: FrameOf<ServerFrame, "pending">,
  ): Promise<{
    hostSpki: string;
    verify: string;
    target: string;
    /** The host's answer, waited for from before the confirmation went out (it may follow "confirmed" at once). */
    answer: Promise<FrameOf<ServerFrame, "approved" | "denied">>;
  }>;
}

export function startCode(input: string, guest: GuestClaims): CodeRun {
  const normalized = normalizeCode(input);
  if (!normalized)
    throw new TesseraError(
      "bad_code",
      "that is not a tessera code (expected 8 letters and digits, like K7QF-M2XD, or an invite HOST:PORT/K7QF-M2XD)",
    );
  const { nameplate, secret } = splitCode(normalized);
  const run = guestStart(nameplate, secret);
  return {
    redeem: { code: nameplate, pake: run.msg },
    async confirm(client, pending) {
      const f = await client.next("pake", "denied");
      if (f.t === "denied") throw new TesseraError("denied", `access denied: ${f.reason}`);
      const mismatch = new TesseraError(
        "code_mismatch",
        `${CODE_MISMATCH}. Check the code with the host (it is single use: they will need to make a new one)`,
      );
      const keys = run.finish(guest, { spki: f.hostSpki, target: pending.target }, f.msg);
      if (!keys) {
        // No tag: the host's share did not decode, so there is nothing to prove.
        client.send({ t: "confirm", requestId: f.requestId });
        throw mismatch;
      }
      // The guest proves the code first; the host proves it back only if this checks out there. Both waits
      // are registered before the confirmation goes out, in order: the host's answer can follow its
      // confirmation in the same read, and a frame nobody waits for is dropped.
      const confirmed = client.next("confirmed", "denied");
      const answer = client.next("approved", "denied");
      answer.catch(() => {});
      client.send({ t: "confirm", requestId: f.requestId, tag: keys.guestTag });
      // Bounded: a coordinator posing as the host that guessed wrong can only stay silent; the guest says so.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const silent = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new TesseraError(
                "code_mismatch",
                `the host never confirmed the code (${CONFIRM_WAIT_MS / 60_000} minutes): possibly someone posing as the host guessed at it; nobody was connected, ask the host for a new code`,
              ),
            ),
          CONFIRM_WAIT_MS,
        );
      });
      const back = await Promise.race([confirmed, silent]).finally(() => clearTimeout(timer));
      // The host found our tag wrong: the code (or what we typed of it) did not match.
      if (back.t === "denied" && back.reason === CODE_MISMATCH) throw mismatch;
      if (back.t === "denied") throw new TesseraError("denied", `access denied: ${back.reason}`);
      if (back.requestId !== f.requestId || !tagsEqual(back.tag, keys.hostTag)) throw mismatch;
      return { hostSpki: f.hostSpki, verify: keys.verify, target: pending.target, answer };
    },
  };
}

/**
 * The approval must name the keys the code confirmed: the host's (which the end-to-end TLS pins) and the
 * guest's own (in its certificate). Returns why not, in plain words, or undefined when it does.
 */
export function approvalMismatch(
  approved: FrameOf<ServerFrame, "approved">,
  confirmed: { hostSpki: string; target: string },
  ownSpki: string,
): string | undefined {
  const confirmedHostSpki = confirmed.hostSpki;
  if (approved.hostSpki !== confirmedHostSpki) {
    return `the coordinator named host key ${approved.hostSpki}, but the code confirmed ${confirmedHostSpki}: the coordinator swapped the host's key, so nothing was sent`;
  }
  if (approved.target !== confirmed.target)
    return `the coordinator named target ${approved.target}, but the code confirmed ${confirmed.target}, so nothing was sent`;
  // A receipt is kept as the host's word: only one signed by the key the code confirmed (or by an approver that
  // key delegated to, for this share), for this request.
  const r = approved.receipt;
  const bad =
    r &&
    receiptChainProblem(r, {
      hostKey: confirmedHostSpki,
      guestKey: ownSpki,
      target: confirmed.target,
      decision: "allow",
      requestId: approved.requestId,
      scope: approved.scope,
      now: Date.now(),
    });
  if (bad) return `the approval's receipt does not hold (${bad}), so nothing was sent`;
  let certSpki: string;
  try {
    certSpki = certInfo(approved.cert).spki;
  } catch {
    return "the coordinator sent a certificate that does not parse, so nothing was sent";
  }
  if (certSpki !== ownSpki)
    return `the coordinator issued the session certificate for key ${certSpki}, not this guest's ${ownSpki}: it swapped the guest's key, so nothing was sent`;
  return undefined;
}
