// Share codes: 8 Crockford base32 characters shown as XXXX-XXXX. The first half is a nameplate the coordinator
// routes by (stored only as a keyed hash); the second half is a secret that never leaves the guest and the host.
import { createHmac, randomInt, timingSafeEqual } from "node:crypto";

/** Crockford's alphabet: no I, L, O or U, so codes survive being read aloud or retyped. */
export const CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
export const CODE_LENGTH = 8;
/** The nameplate's length; the rest (4 characters, 20 bits) is the secret half that keys the PAKE. */
export const NAMEPLATE_LENGTH = 4;

function randomChars(n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += CODE_ALPHABET[randomInt(CODE_ALPHABET.length)];
  return s;
}

/** The coordinator's half: what it routes by. */
export function generateNameplate(): string {
  return randomChars(NAMEPLATE_LENGTH);
}

/** The minter's half: born in the process that mints the code and kept there. */
export function generateSecret(): string {
  return randomChars(CODE_LENGTH - NAMEPLATE_LENGTH);
}

/** A normalized code's two halves. */
export function splitCode(normalized: string): { nameplate: string; secret: string } {
  return { nameplate: normalized.slice(0, NAMEPLATE_LENGTH), secret: normalized.slice(NAMEPLATE_LENGTH) };
}

/** Whether `s` is a nameplate (4 characters of the alphabet, already normalized). */
export function isNameplate(s: string): boolean {
  return s.length === NAMEPLATE_LENGTH && [...s].every((c) => CODE_ALPHABET.includes(c));
}

export function generateCode(): string {
  return formatCode(generateNameplate() + generateSecret());
}

/** Case- and dash-insensitive; I/L read as 1 and O as 0, as Crockford intends. Undefined if not a code. */
export function normalizeCode(input: string): string | undefined {
  const s = input.toUpperCase().replace(/[\s-]/g, "").replace(/[IL]/g, "1").replace(/O/g, "0");
  if (s.length !== CODE_LENGTH) return undefined;
  for (const c of s) if (!CODE_ALPHABET.includes(c)) return undefined;
  return s;
}

/** A nameplate as typed (case- and Crockford-forgiving), or undefined. */
export function normalizeNameplate(input: string): string | undefined {
  const s = input.toUpperCase().replace(/[\s-]/g, "").replace(/[IL]/g, "1").replace(/O/g, "0");
  return isNameplate(s) ? s : undefined;
}

export function formatCode(normalized: string): string {
  return `${normalized.slice(0, 4)}-${normalized.slice(4)}`;
}

export function hashCode(key: Buffer, normalized: string): string {
  return createHmac("sha256", key).update(normalized).digest("hex");
}

export function safeEqualHex(a: string, b: string): boolean {
  const x = Buffer.from(a, "hex");
  const y = Buffer.from(b, "hex");
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}
