// Unit tests for src/coordinator/enroll.ts: host enrolment tokens (make / parse / check).
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { checkEnrollToken, EnrollRecord, makeEnrollToken, parseEnrollToken } from "../../src/coordinator/enroll.ts";
import { RefusedError } from "../../src/errors.ts";

const CA_HEX = "0123456789abcdef".repeat(4);
const NOW = 1_900_000_000_000;
const TTL = 60 * 60_000;

function refused(fn: () => unknown): RefusedError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(RefusedError);
  return caught as RefusedError;
}

describe("makeEnrollToken", () => {
  test("produces TSE1.<id>.<secret>.<ca> and a valid record without the secret", () => {
    const { token, record } = makeEnrollToken(CA_HEX, TTL, NOW);
    expect(token).toMatch(/^TSE1\.[0-9a-f]{8}\.[A-Za-z0-9_-]{32}\.[0-9a-f]{64}$/);
    expect(v.is(EnrollRecord, record)).toBe(true);
    expect(record.expiresAt).toBe(NOW + TTL);
    const { id, secret } = parseEnrollToken(token);
    expect(record.id).toBe(id);
    expect(record.hash).not.toContain(secret);
    expect(JSON.stringify(record)).not.toContain(secret);
  });

  test("tokens are unique", () => {
    const a = makeEnrollToken(CA_HEX, TTL, NOW);
    const b = makeEnrollToken(CA_HEX, TTL, NOW);
    expect(a.token).not.toBe(b.token);
    expect(a.record.hash).not.toBe(b.record.hash);
  });
});

describe("parseEnrollToken", () => {
  test("the CA pin equals the hex given", () => {
    const { token, record } = makeEnrollToken(CA_HEX, TTL, NOW);
    const p = parseEnrollToken(token);
    expect(p.caPin).toBe(CA_HEX);
    expect(p.id).toBe(record.id);
    expect(p.secret).toHaveLength(32);
  });

  test("tolerates surrounding whitespace", () => {
    const { token } = makeEnrollToken(CA_HEX, TTL, NOW);
    expect(parseEnrollToken(`  ${token}\n`).caPin).toBe(CA_HEX);
  });

  test("malformed tokens are refused with bad_token", () => {
    const { token } = makeEnrollToken(CA_HEX, TTL, NOW);
    const [, id, secret, ca] = token.split(".");
    const bad = [
      "",
      "garbage",
      token.replace(/^TSE1/, "TSE2"),
      `TSE1.${id}.${secret}`,
      `TSE1.${id}.${secret}.${ca}.extra`,
      `TSE1.${id!.slice(1)}.${secret}.${ca}`,
      `TSE1.${id!.toUpperCase().replace(/[0-9]/g, "A")}.${secret}.${ca}`,
      `TSE1.${id}.${secret!.slice(1)}.${ca}`,
      `TSE1.${id}.${secret}.${ca!.slice(1)}`,
      `TSE1.${id}.${secret!.slice(1)}+.${ca}`,
    ];
    for (const t of bad) {
      const err = refused(() => parseEnrollToken(t));
      expect([t, err.code]).toEqual([t, "bad_token"]);
    }
  });
});

describe("checkEnrollToken", () => {
  test("a valid token is accepted and returns its id", () => {
    const { token, record } = makeEnrollToken(CA_HEX, TTL, NOW);
    const other = makeEnrollToken(CA_HEX, TTL, NOW).record;
    expect(checkEnrollToken(token, [other, record], NOW)).toBe(record.id);
    expect(checkEnrollToken(token, [record], NOW + TTL - 1)).toBe(record.id);
  });

  test("a wrong secret is refused with bad_token", () => {
    const { token, record } = makeEnrollToken(CA_HEX, TTL, NOW);
    const [, id, secret, ca] = token.split(".");
    const flipped = (secret![0] === "A" ? "B" : "A") + secret!.slice(1);
    const err = refused(() => checkEnrollToken(`TSE1.${id}.${flipped}.${ca}`, [record], NOW));
    expect(err.code).toBe("bad_token");
  });

  test("a token from a different record set (unknown id) is refused with bad_token", () => {
    const { token } = makeEnrollToken(CA_HEX, TTL, NOW);
    const other = makeEnrollToken(CA_HEX, TTL, NOW).record;
    expect(refused(() => checkEnrollToken(token, [other], NOW)).code).toBe("bad_token");
    expect(refused(() => checkEnrollToken(token, [], NOW)).code).toBe("bad_token");
  });

  test("an expired token is refused with token_expired", () => {
    const { token, record } = makeEnrollToken(CA_HEX, TTL, NOW);
    expect(refused(() => checkEnrollToken(token, [record], NOW + TTL)).code).toBe("token_expired");
    expect(refused(() => checkEnrollToken(token, [record], NOW + TTL + 1)).code).toBe("token_expired");
  });

  test("a malformed token is refused with bad_token", () => {
    const { record } = makeEnrollToken(CA_HEX, TTL, NOW);
    expect(refused(() => checkEnrollToken("TSE1.nothex!!.x.y", [record], NOW)).code).toBe("bad_token");
  });

  test("the CA pin is not part of the secret check", () => {
    // The pin is for the host to check the coordinator; the coordinator accepts the token whatever pin it carries.
    const { token, record } = makeEnrollToken(CA_HEX, TTL, NOW);
    const [, id, secret] = token.split(".");
    expect(checkEnrollToken(`TSE1.${id}.${secret}.${"f".repeat(64)}`, [record], NOW)).toBe(record.id);
  });
});
