// Property tests for what people type and frames carry as text: share codes and nameplates
// (wire/codes.ts) and addresses (wire/address.ts). Each is a whole-string parser (there is no stream to
// cut), so: (a) any string gives a value or a typed error, and a value is always well formed; (b) what
// the formatter writes, the parser reads back. Shuffled spellings of a code stand in for split points.
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { TesseraError } from "../../src/errors.ts";
import { formatTarget, parseTarget, splitAddress } from "../../src/wire/address.ts";
import {
  CODE_ALPHABET,
  formatCode,
  isNameplate,
  normalizeCode,
  normalizeNameplate,
  safeEqualHex,
  splitCode,
} from "../../src/wire/codes.ts";
import { target } from "../../src/wire/protocol.ts";
import { fc, typedOrValue } from "./fc.ts";

const codeChar = fc.constantFrom(...CODE_ALPHABET);
const code = fc.string({ unit: codeChar, minLength: 8, maxLength: 8 });
/** Strings near a code: its alphabet, look-alikes, separators and anything else. */
const nearCode = fc.string({
  unit: fc.oneof(
    codeChar,
    fc.constantFrom("-", " ", "\t", "i", "l", "o", "u", "U", "I"),
    fc.string({ maxLength: 1, unit: "binary" }),
  ),
  maxLength: 14,
});

/** Stored code hashes are hex; what is compared with them may be anything. */
const hexish = fc.oneof(
  fc.string({ unit: fc.constantFrom(..."0123456789abcdefAF"), maxLength: 64 }),
  fc.string({ unit: "binary", maxLength: 20 }),
);

describe("share codes", () => {
  test("(a) any string normalizes to 8 characters of the alphabet, or to nothing; it never throws", () => {
    fc.assert(
      fc.property(fc.oneof(nearCode, fc.string({ unit: "binary", maxLength: 40 })), (s) => {
        const c = normalizeCode(s);
        if (c !== undefined) {
          expect(c).toMatch(/^[0-9A-HJKMNP-TV-Z]{8}$/);
          expect(normalizeCode(c)).toBe(c);
          const { nameplate, secret } = splitCode(c);
          expect(isNameplate(nameplate)).toBe(true);
          expect(nameplate + secret).toBe(c);
        }
        const n = normalizeNameplate(s);
        if (n !== undefined) expect(isNameplate(n)).toBe(true);
      }),
    );
  });

  test("(b) a code as shown (XXXX-XXXX), in any case, with I/L/O for 1/0 and stray dashes or spaces, reads back", () => {
    fc.assert(
      fc.property(
        code,
        fc.array(fc.tuple(fc.nat(), fc.constantFrom("-", " ")), { maxLength: 4 }),
        fc.boolean(),
        (c, seps, lower) => {
          expect(normalizeCode(formatCode(c))).toBe(c);
          let typed = formatCode(c).replace(/1/g, "I").replace(/0/g, "o");
          for (const [at, sep] of seps)
            typed = typed.slice(0, at % (typed.length + 1)) + sep + typed.slice(at % (typed.length + 1));
          expect(normalizeCode(lower ? typed.toLowerCase() : typed)).toBe(c);
        },
      ),
    );
  });

  test("(a) hash comparison takes any strings and says only true or false", () => {
    fc.assert(
      fc.property(hexish, hexish, (a, b) => {
        expect(typeof safeEqualHex(a, b)).toBe("boolean");
        expect(safeEqualHex(a, a)).toBe(Buffer.from(a, "hex").length > 0);
      }),
    );
  });
});

/** Hosts a target may name: DNS names, IPv4 and IPv6 literals (the schema caps a target at 300 characters). */
const host = fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6()).filter((h) => h.length < 290);
const port = fc.integer({ min: 1, max: 65535 });
/** Address-shaped text: pieces of addresses, brackets, colons, digits and anything else. */
const addressish = fc.oneof(
  fc.string({ unit: fc.constantFrom("[", "]", ":", "1", "0", "9", "a", ".", "-", " ", "%", "6"), maxLength: 20 }),
  fc
    .tuple(host, fc.string({ unit: fc.constantFrom("0", "1", "5", "9", ":", "-"), maxLength: 8 }))
    .map(([h, p]) => `${h}:${p}`),
  fc.string({ unit: "binary", maxLength: 30 }),
);

describe("addresses", () => {
  test("(a) parseTarget: any text is a host and a port from 1 to 65535 the schema accepts, or a TesseraError", () => {
    fc.assert(
      fc.property(addressish, (s) => {
        const r = typedOrValue(() => parseTarget(s), TesseraError);
        if (r instanceof Error) return void expect((r as TesseraError).code).toBe("bad_address");
        expect(v.is(target, s)).toBe(true);
        expect(r.port).toBeGreaterThanOrEqual(1);
        expect(r.port).toBeLessThanOrEqual(65535);
        expect(r.host.length).toBeGreaterThan(0);
      }),
    );
  });

  test("(a) splitAddress: any text is a host and a port in range, or a TesseraError", () => {
    fc.assert(
      fc.property(addressish, fc.integer({ min: 0, max: 65535 }), fc.boolean(), (s, dflt, listening) => {
        const r = typedOrValue(() => splitAddress(s, dflt, listening), TesseraError);
        if (r instanceof Error) return;
        expect(r.port).toBeGreaterThanOrEqual(listening ? 0 : 1);
        expect(r.port).toBeLessThanOrEqual(65535);
        expect(r.host.length).toBeGreaterThan(0);
      }),
    );
  });

  test("(b) formatTarget then parseTarget (and splitAddress) gives back the host and port", () => {
    fc.assert(
      fc.property(host, port, (h, p) => {
        const text = formatTarget(h, p);
        expect(parseTarget(text)).toEqual({ host: h, port: p });
        expect(splitAddress(text)).toEqual({ host: h, port: p });
      }),
    );
  });
});
