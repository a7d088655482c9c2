// CPace (draft-irtf-cfrg-cpace) on ristretto255 with SHA-512, initiator/responder: a PAKE whose only secret is the code's secret half.
import { ristretto255, ristretto255_hasher } from "@noble/curves/ed25519.js";
import { sha512 } from "@noble/hashes/sha2.js";

const Point = ristretto255.Point;
const DSI = Buffer.from("CPaceRistretto255");
const H_BLOCK_BYTES = 128;

export function prependLen(data: Uint8Array): Buffer {
  const len: number[] = [];
  let n = data.length;
  do {
    len.push(n < 128 ? n : (n & 0x7f) | 0x80);
    n >>>= 7;
  } while (n > 0);
  return Buffer.concat([Buffer.from(len), data]);
}

export function lvCat(...parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts.map(prependLen));
}

export function generatorString(prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Buffer {
  const zpad = Math.max(0, H_BLOCK_BYTES - 1 - prependLen(prs).length - prependLen(DSI).length);
  return lvCat(DSI, prs, new Uint8Array(zpad), ci, sid);
}

/** The password-dependent generator g: SHA-512 of the generator string, mapped by RFC 9496 element derivation. */
export function calculateGenerator(prs: Uint8Array, ci: Uint8Array, sid: Uint8Array) {
  return ristretto255_hasher.deriveToCurve!(sha512(generatorString(prs, ci, sid)));
}

/** A scalar as the draft recommends: 32 random bytes, bits above 252 cleared, little-endian (never zero). */
export function sampleScalar(): bigint {
  for (;;) {
    const b = crypto.getRandomValues(new Uint8Array(32));
    b[31]! &= 0x0f;
    const s = BigInt(`0x${Buffer.from(b).reverse().toString("hex")}`);
    if (s !== 0n) return s;
  }
}

export function scalarFromLE(bytes: Uint8Array): bigint {
  return Point.Fn.create(BigInt(`0x${Buffer.from(bytes).reverse().toString("hex")}`));
}

/** Y = y·g, encoded. */
export function publicShare(y: bigint, g: ReturnType<typeof calculateGenerator>): Buffer {
  return Buffer.from(g.multiply(y).toBytes());
}

/** K = y·X, or undefined where the draft says abort: X does not decode, or K is the identity. */
export function scalarMultVfy(y: bigint, X: Uint8Array): Buffer | undefined {
  let p: InstanceType<typeof Point>;
  try {
    p = Point.fromBytes(X);
  } catch {
    return undefined;
  }
  const k = p.multiply(y);
  return k.is0() ? undefined : Buffer.from(k.toBytes());
}

/** ISK = H(lv_cat(DSI||"_ISK", sid, K) || transcript_ir(Ya, ADa, Yb, ADb)). */
export function deriveIsk(
  sid: Uint8Array,
  K: Uint8Array,
  Ya: Uint8Array,
  ADa: Uint8Array,
  Yb: Uint8Array,
  ADb: Uint8Array,
): Buffer {
  const dsiIsk = Buffer.concat([DSI, Buffer.from("_ISK")]);
  return Buffer.from(sha512(Buffer.concat([lvCat(dsiIsk, sid, K), lvCat(Ya, ADa), lvCat(Yb, ADb)])));
}
