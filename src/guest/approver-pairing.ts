// Pairing an approver, the other device's half: redeem the host's pairing code with the approver key as this
// request's identity (the CPace binds it, and the host key the code confirms), then read the host's signed
// delegation from the one end-to-end stream the host opens for it. The delegation must be signed by the key the
// code confirmed and name this device's key, so a coordinator can neither swap keys nor hand over another's.
import { TesseraError } from "../errors.ts";
import { approverKey, type Delegation, delegationProblem, parseDelegation } from "../pki/delegation.ts";
import { spkiFingerprint } from "../pki/fingerprint.ts";
import { identityPublic } from "../pki/identity.ts";
import { Guest } from "./guest.ts";

/** A delegation is ~1.5 KiB; anything past this from the stream is not one. */
const MAX_DELEGATION_BYTES = 16 * 1024;

export interface PairAsApprover {
  address: string;
  caPem: string;
  version: string;
  code: string;
  /** This device's approver key (PKCS#8 PEM); only its public half leaves. */
  approverKeyPem: string;
  /** How this device introduces itself in the host's prompt. */
  name: string;
}

export async function pairAsApprover(o: PairAsApprover): Promise<{ delegation: Delegation; hostKey: string }> {
  const guest = await Guest.connect({ address: o.address, caPem: o.caPem, version: o.version });
  try {
    const ok = await guest.request({
      code: o.code,
      name: o.name,
      reason: "pair this device as an approver",
      identityKeyPem: o.approverKeyPem,
    });
    const stream = await guest.openStream();
    const text = await readLine(stream);
    let d: Delegation;
    try {
      d = parseDelegation(JSON.parse(text));
    } catch (err) {
      throw new TesseraError("bad_delegation", `the host sent no delegation: ${(err as Error).message}`);
    }
    // The host key the code confirmed (the guest already checked approved.hostSpki against the PAKE).
    const bad = delegationProblem(d, { hostKey: ok.hostSpki, at: Date.now() });
    if (bad) throw bad;
    const mine = spkiFingerprint(identityPublic(o.approverKeyPem));
    if (approverKey(d) !== mine)
      throw new TesseraError("key_mismatch", `the delegation names key ${approverKey(d)}, not this device's ${mine}`);
    return { delegation: d, hostKey: ok.hostSpki };
  } finally {
    await guest.close().catch(() => {});
  }
}

/** The one line the host sends (the delegation, newline-terminated); the stream is closed once it is in. */
function readLine(stream: NodeJS.ReadableStream & { destroy(): void }): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    stream.on("data", (b: Buffer) => {
      n += b.length;
      parts.push(Buffer.from(b));
      const all = Buffer.concat(parts);
      const nl = all.indexOf(0x0a);
      if (nl >= 0) {
        stream.destroy();
        return resolve(all.subarray(0, nl).toString("utf8"));
      }
      if (n > MAX_DELEGATION_BYTES) {
        stream.destroy();
        reject(new TesseraError("bad_delegation", "the host sent more than a delegation"));
      }
    });
    stream.on("end", () =>
      reject(new TesseraError("bad_delegation", "the host closed the stream without a delegation")),
    );
    stream.on("error", reject);
  });
}
