// Tessera's use of CPace: the code's secret half is the password, the guest (initiator) and the host (responder)
// bind what matters into the associated data, and each proves the key with a MAC before the host is asked.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { sha512 } from "@noble/hashes/sha2.js";
import { calculateGenerator, deriveIsk, lvCat, publicShare, sampleScalar, scalarMultVfy } from "./cpace.ts";

const CI_LABEL = "tessera code v1";
const SID_BYTES = 16;
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64url");
const unb64 = (s: string) => Buffer.from(s, "base64url");
const utf8 = (s: string) => Buffer.from(s, "utf8");

/** What the guest says about itself: its per-join TLS key, the name and the reason the host will read. */
export interface GuestClaims {
  spki: string;
  name: string;
  reason: string /** The long-term identity key's fingerprint, when the guest has one. */;
  identity?: string;
}
/** What the host says: its TLS key (the one the guest will pin) and the target the code opens. */
export interface HostClaims {
  spki: string;
  target: string;
}

/** The key both sides agreed on, its confirmation tags, and the string people can compare (`--verify`). */
export interface PakeKeys {
  isk: Buffer;
  guestTag: string;
  hostTag: string;
  verify: string;
}

const ci = (nameplate: string) => lvCat(utf8(CI_LABEL), utf8(nameplate));
const adGuest = (g: GuestClaims) =>
  lvCat(utf8("guest"), utf8(g.spki), utf8(g.name), utf8(g.reason), ...(g.identity ? [utf8(g.identity)] : []));
const adHost = (h: HostClaims) => lvCat(utf8("host"), utf8(h.spki), utf8(h.target));

function keys(sid: Buffer, K: Buffer, Ya: Buffer, ADa: Buffer, Yb: Buffer, ADb: Buffer): PakeKeys {
  const isk = deriveIsk(sid, K, Ya, ADa, Yb, ADb);
  // mac_key as the draft's key-confirmation section suggests; the role label keeps a tag from being reflected.
  const macKey = Buffer.from(sha512(Buffer.concat([utf8("CPaceMac"), sid, isk])));
  const tag = (role: string, Y: Buffer, AD: Buffer) =>
    createHmac("sha512", macKey).update(role).update(lvCat(Y, AD)).digest("base64url");
  const v = Buffer.from(sha512(Buffer.concat([utf8("tessera verify"), isk]))).toString("hex");
  return {
    isk,
    guestTag: tag("guest", Ya, ADa),
    hostTag: tag("host", Yb, ADb),
    verify: `${v.slice(0, 4)}-${v.slice(4, 8)}-${v.slice(8, 12)}`,
  };
}

export function tagsEqual(a: string | undefined, b: string): boolean {
  if (a === undefined) return false;
  const x = unb64(a);
  const y = unb64(b);
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

/** The guest's first message: sent with the redeem; the secret half stays in the closure. */
export function guestStart(nameplate: string, secret: string) {
  const sid = randomBytes(SID_BYTES);
  const y = sampleScalar();
  const Ya = publicShare(y, calculateGenerator(utf8(secret), ci(nameplate), sid));
  return {
    msg: { sid: b64(sid), msg: b64(Ya) },
    /** The host's answer: keys if its share decodes, else undefined (the draft's abort). */
    finish(guest: GuestClaims, host: HostClaims, Yb64: string): PakeKeys | undefined {
      const Yb = unb64(Yb64);
      const K = scalarMultVfy(y, Yb);
      return K && keys(sid, K, Ya, adGuest(guest), Yb, adHost(host));
    },
  };
}

/** The host's answer to a guest's first message, with the secret half it kept when it minted the code. */
export function hostRespond(
  nameplate: string,
  secret: string,
  sid64: string,
  Ya64: string,
  guest: GuestClaims,
  host: HostClaims,
): { msg: string; keys: PakeKeys } | undefined {
  const sid = unb64(sid64);
  const Ya = unb64(Ya64);
  if (sid.length !== SID_BYTES) return undefined;
  const y = sampleScalar();
  const Yb = publicShare(y, calculateGenerator(utf8(secret), ci(nameplate), sid));
  const K = scalarMultVfy(y, Ya);
  return K && { msg: b64(Yb), keys: keys(sid, K, Ya, adGuest(guest), Yb, adHost(host)) };
}
