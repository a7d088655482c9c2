// Unit tests for src/wire/codes.ts: share-code generation, normalisation, keyed hashing and comparison.
import { describe, expect, test } from "bun:test";
import {
  CODE_ALPHABET,
  CODE_LENGTH,
  formatCode,
  generateCode,
  hashCode,
  normalizeCode,
  safeEqualHex,
} from "../../src/wire/codes.ts";

const CODE_RE = /^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/;

describe("CODE_ALPHABET", () => {
  test("is Crockford base32: 32 distinct characters without I, L, O or U", () => {
    expect(CODE_ALPHABET.length).toBe(32);
    expect(new Set(CODE_ALPHABET).size).toBe(32);
    for (const c of "ILOU") expect(CODE_ALPHABET).not.toContain(c);
    expect(CODE_ALPHABET).toMatch(/^[0-9A-Z]+$/);
    expect(CODE_LENGTH).toBe(8);
  });
});

describe("generateCode", () => {
  test("1000 samples are XXXX-XXXX over the alphabet and all distinct", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const c = generateCode();
      expect(c).toMatch(CODE_RE);
      seen.add(c);
    }
    // 32^8 ≈ 1.1e12 codes: a collision among 1000 has probability ~4.5e-7.
    expect(seen.size).toBe(1000);
  });

  test("uses the whole alphabet", () => {
    const chars = new Set<string>();
    for (let i = 0; i < 500; i++) for (const c of generateCode().replace("-", "")) chars.add(c);
    // 4000 draws from 32 symbols: every symbol appears with overwhelming probability.
    expect([...chars].sort().join("")).toBe([...CODE_ALPHABET].sort().join(""));
  });

  test("a generated code normalises to itself without the dash", () => {
    for (let i = 0; i < 100; i++) {
      const c = generateCode();
      const n = normalizeCode(c);
      expect(n).toBe(c.replace("-", ""));
      expect(formatCode(n!)).toBe(c);
    }
  });
});

describe("normalizeCode", () => {
  test("is case-, dash- and whitespace-insensitive", () => {
    expect(normalizeCode("ABCD-EFGH")).toBe("ABCDEFGH");
    expect(normalizeCode("abcd-efgh")).toBe("ABCDEFGH");
    expect(normalizeCode("abcdefgh")).toBe("ABCDEFGH");
    expect(normalizeCode("  ab cd - ef gh \n")).toBe("ABCDEFGH");
    expect(normalizeCode("A-B-C-D-E-F-G-H")).toBe("ABCDEFGH");
    expect(normalizeCode("aBcD\tEfGh")).toBe("ABCDEFGH");
  });

  test("reads I and L as 1 and O as 0", () => {
    expect(normalizeCode("IiLl-OoAB")).toBe("11110" + "0AB");
    expect(normalizeCode("0O1I-1L00")).toBe("00111100");
  });

  test("rejects wrong lengths", () => {
    expect(normalizeCode("")).toBeUndefined();
    expect(normalizeCode("ABCD-EFG")).toBeUndefined();
    expect(normalizeCode("ABCD-EFGHJ")).toBeUndefined();
    expect(normalizeCode("--------")).toBeUndefined();
  });

  test("rejects U and characters outside the alphabet", () => {
    expect(normalizeCode("ABCD-EFGU")).toBeUndefined();
    expect(normalizeCode("uBCD-EFGH")).toBeUndefined();
    expect(normalizeCode("ABCD_EFGH")).toBeUndefined();
    expect(normalizeCode("ABCD-EFG!")).toBeUndefined();
    expect(normalizeCode("ABCD.EFGH")).toBeUndefined();
  });
});

describe("hashCode", () => {
  const key1 = Buffer.alloc(32, 1);
  const key2 = Buffer.alloc(32, 2);

  test("is deterministic and 64 hex chars", () => {
    const h = hashCode(key1, "ABCDEFGH");
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(hashCode(Buffer.alloc(32, 1), "ABCDEFGH")).toBe(h);
  });

  test("is keyed: a different key gives a different hash", () => {
    expect(hashCode(key1, "ABCDEFGH")).not.toBe(hashCode(key2, "ABCDEFGH"));
  });

  test("different codes give different hashes", () => {
    expect(hashCode(key1, "ABCDEFGH")).not.toBe(hashCode(key1, "ABCDEFGJ"));
  });

  test("matches HMAC-SHA256(key, code)", () => {
    const expected = new Bun.CryptoHasher("sha256", key1).update("ABCDEFGH").digest("hex");
    expect(hashCode(key1, "ABCDEFGH")).toBe(expected);
  });
});

describe("safeEqualHex", () => {
  test("true for equal hex, false for different", () => {
    const a = "00ff".repeat(16);
    expect(safeEqualHex(a, a)).toBe(true);
    expect(safeEqualHex(a, a.toUpperCase())).toBe(true);
    expect(safeEqualHex(a, `00fe${a.slice(4)}`)).toBe(false);
  });

  test("false for different lengths and for empty input", () => {
    expect(safeEqualHex("abcd", "abcdef")).toBe(false);
    expect(safeEqualHex("abcdef", "abcd")).toBe(false);
    expect(safeEqualHex("", "")).toBe(false);
    expect(safeEqualHex("", "ab")).toBe(false);
  });

  test("works with real hashes", () => {
    const key = Buffer.alloc(32, 7);
    expect(safeEqualHex(hashCode(key, "ABCDEFGH"), hashCode(key, normalizeCode("abcd-efgh")!))).toBe(true);
    expect(safeEqualHex(hashCode(key, "ABCDEFGH"), hashCode(key, "ABCDEFGK"))).toBe(false);
  });
});
