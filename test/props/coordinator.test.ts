// Property tests for what a new host sends the coordinator before it has a certificate: its enrolment
// token (coordinator/enroll.ts), "TSE1.<id>.<secret>.<ca-hash>". (a) Any text is a token or a RefusedError
// the host can act on; (b) a token as `tessera ca` writes it reads back, and checks only against its own
// record, only while it lives.
import { describe, expect, test } from "bun:test";
import { RefusedError } from "../../src/errors.ts";
import { checkEnrollToken, makeEnrollToken, parseEnrollToken } from "../../src/coordinator/enroll.ts";
import { fc, typedOrValue } from "./fc.ts";

const caHex = fc.stringMatching(/^[0-9a-f]{64}$/);
/** Token-shaped text: real tokens cut or with a character changed, the pieces, and anything else. */
const tokenish = fc.oneof(
  fc.tuple(caHex, fc.nat(), fc.nat(), fc.string({ minLength: 1, maxLength: 1 })).map(([ca, i, j, c]) => {
    const t = makeEnrollToken(ca, 60_000, 0).token;
    return j % 2 ? t.slice(0, i % t.length) : t.slice(0, i % t.length) + c + t.slice((i % t.length) + 1);
  }),
  fc.string({ unit: fc.constantFrom("T", "S", "E", "1", ".", "a", "f", "0", "_", "-", " "), maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 120 }),
);

describe("enrolment tokens", () => {
  test("(a) any text is a token's parts or a RefusedError saying what a token looks like", () => {
    fc.assert(
      fc.property(tokenish, (s) => {
        const r = typedOrValue(() => parseEnrollToken(s), RefusedError);
        if (r instanceof Error) return void expect((r as RefusedError).code).toBe("bad_token");
        expect(r.id).toMatch(/^[0-9a-f]{8}$/);
        expect(r.caPin).toMatch(/^[0-9a-f]{64}$/);
        expect(`TSE1.${r.id}.${r.secret}.${r.caPin}`).toBe(s.trim());
      }),
    );
  });

  test("(b) a token as written reads back, checks against its own record only, and only before it expires", () => {
    fc.assert(
      fc.property(caHex, fc.integer({ min: 1, max: 10_000_000 }), fc.nat(1_000_000), (ca, ttl, now) => {
        const a = makeEnrollToken(ca, ttl, now);
        const b = makeEnrollToken(ca, ttl, now);
        expect(parseEnrollToken(` ${a.token}\n`)).toEqual({
          id: a.record.id,
          secret: a.token.split(".")[2]!,
          caPin: ca,
        });
        expect(checkEnrollToken(a.token, [b.record, a.record], now)).toBe(a.record.id);
        fc.pre(a.record.id !== b.record.id);
        expect(() => checkEnrollToken(a.token, [b.record], now)).toThrow("not recognised");
        expect(() => checkEnrollToken(a.token, [a.record], now + ttl)).toThrow("expired");
      }),
      { numRuns: 100 },
    );
  });
});
