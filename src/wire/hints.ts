// Direct-path hints: the addresses a side of a session may be reached on, signed with that side's session
// key so the coordinator that relays them cannot add, drop or change one (it holds no session key).
import os from "node:os";
import { createHash, createPublicKey, sign, verify } from "node:crypto";
import { spkiFingerprint } from "../pki/fingerprint.ts";
import { STREAM_TOKEN_BYTES } from "./protocol.ts";

/** A probe presents its session's probe token in place of a stream token; the far end, once both keys check out, answers PROBE_OK. */
export function probeToken(sessionId: string): Buffer {
  return createHash("sha256").update(`tessera-direct-probe-v1 ${sessionId}`).digest().subarray(0, STREAM_TOKEN_BYTES);
}
export const PROBE_OK = Buffer.from([1]);

export interface Hint {
  host: string;
  port: number;
}

/** Which side offers the hints: signed, so guest hints can never be passed off as the host's or back. */
export type HintRole = "guest" | "host";
export interface SignedHints {
  sessionId: string;
  hints: Hint[];
  key: string;
  sig: string;
}

/** Length-prefixed fields under a fixed label: no field can smuggle a separator, no other signature passes for this one. */
export function hintBytes(sessionId: string, role: HintRole, hints: readonly Hint[]): Buffer {
  const parts = ["tessera-direct-hints-v1", role, sessionId, ...hints.map((h) => `${h.host} ${h.port}`)];
  return Buffer.from(parts.map((s) => `${Buffer.byteLength(s)}:${s}`).join("\n"));
}

/** Signs hints with the side's session key (PKCS#8 PEM): the key whose certificate the other side pins. */
export function signHints(keyPem: string, sessionId: string, role: HintRole, hints: Hint[]): SignedHints {
  const key = createPublicKey(keyPem).export({ type: "spki", format: "der" }).toString("base64");
  return { sessionId, hints, key, sig: sign("sha256", hintBytes(sessionId, role, hints), keyPem).toString("base64") };
}

/**
 * Why these hints must not be used (undefined when they may): the key must be the very one pinned for
 * this session (`pinnedSpki`, SHA256:...), and its signature must cover exactly this session, role and list.
 */
export function hintsProblem(f: SignedHints, role: HintRole, pinnedSpki: string): string | undefined {
  let fp: string;
  try {
    fp = spkiFingerprint(f.key);
  } catch {
    return "the hints' key is not a public key";
  }
  if (fp !== pinnedSpki)
    return `the hints are signed by key ${fp}, not the ${role}'s key this session was approved for`;
  try {
    const key = createPublicKey({ key: Buffer.from(f.key, "base64"), format: "der", type: "spki" });
    if (verify("sha256", hintBytes(f.sessionId, role, f.hints), key, Buffer.from(f.sig, "base64"))) return undefined;
  } catch {
    // A malformed signature is a signature that does not verify.
  }
  return "the hints' signature does not verify (changed on the way, or made for another session)";
}

/**
 * Addresses this machine may be reached on, to offer as hints: loopback when the coordinator is reached on
 * loopback (everyone on one machine), then every non-internal IPv4 address, then every IPv6 one; never
 * link-local (the far end would need our interface to reach it, and the agent refuses it anyway). 16 at most.
 */
export function localHints(
  port: number,
  coordinatorOnLoopback: boolean,
  ifaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces(),
): Hint[] {
  const all = Object.values(ifaces)
    .flatMap((a) => a ?? [])
    .filter((a) => !a.internal);
  const v4 = all.filter((a) => a.family === "IPv4" && !a.address.startsWith("169.254."));
  const v6 = all.filter((a) => a.family === "IPv6" && !/^fe[89ab]/i.test(a.address) && !a.address.includes("%"));
  const out: Hint[] = coordinatorOnLoopback ? [{ host: "127.0.0.1", port }] : [];
  for (const a of [...v4, ...v6]) out.push({ host: a.address, port });
  return out.slice(0, 16);
}
