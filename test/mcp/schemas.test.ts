// Unit tests for the MCP tool inputs: invites, local addresses, reasons (one line, no secrets), and the
// JSON Schema each tool advertises.
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { TesseraError } from "../../src/errors.ts";
import {
  AccessRequestInput,
  parseInvite,
  parseLocal,
  secretIn,
  ShareInviteInput,
  ShellRunInput,
  toolInput,
} from "../../src/mcp/schemas.ts";

function thrown(fn: () => unknown): TesseraError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TesseraError);
    return err as TesseraError;
  }
  throw new Error("did not throw");
}

describe("invites", () => {
  test("HOST:PORT/CODE names the coordinator; a bare code uses the linked one; codes are normalised", () => {
    expect(parseInvite("relay.example.com:8443/k7qf-m2xd")).toEqual({
      address: "relay.example.com:8443",
      code: "K7QF-M2XD",
    });
    expect(parseInvite("[::1]:9000/K7QFM2XD")).toEqual({ address: "[::1]:9000", code: "K7QF-M2XD" });
    expect(parseInvite("K7QF-M2XD")).toEqual({ address: undefined, code: "K7QF-M2XD" });
  });

  test("anything else is refused with the expected shapes named", () => {
    expect(thrown(() => parseInvite("hello")).message).toContain(
      '"hello" is not an invite: expected HOST:PORT/XXXX-XXXX',
    );
    expect(thrown(() => parseInvite("host:99999/K7QF-M2XD")).code).toBe("bad_address");
    expect(thrown(() => parseInvite("host:1/K7QF")).code).toBe("bad_code");
  });
});

describe("local addresses", () => {
  test("loopback only, any free port by default", () => {
    expect(parseLocal(undefined)).toEqual({ host: "127.0.0.1", port: 0 });
    expect(parseLocal("localhost:15432")).toEqual({ host: "127.0.0.1", port: 15432 });
    expect(parseLocal("[::1]:0")).toEqual({ host: "::1", port: 0 });
    expect(parseLocal("127.0.0.2:80")).toEqual({ host: "127.0.0.2", port: 80 });
    for (const bad of ["0.0.0.0:5432", "192.168.1.4:1", "example.com:80", "[::]:1"])
      expect(thrown(() => parseLocal(bad)).message).toContain("loopback");
  });
});

describe("access_request input", () => {
  const parse = (o: unknown) => v.safeParse(AccessRequestInput, o);
  test("a reason is required, one line, plain text, and never looks like a secret", () => {
    expect(parse({ invite: "K7QF-M2XD", reason: "read the checkout logs to find the 500s" }).success).toBe(true);
    for (const reason of ["", "  ", "two\nlines", "tab\there", "bidi \u202e trick", "x".repeat(501)])
      expect(parse({ invite: "K7QF-M2XD", reason }).success).toBe(false);
    expect(parse({ invite: "K7QF-M2XD" }).success).toBe(false);
    expect(parse({ invite: "K7QF-M2XD", reason: "ok", extra: 1 }).success).toBe(false);
  });

  test("secret-looking reasons are refused, ordinary technical text is not", () => {
    for (const s of [
      "-----BEGIN OPENSSH PRIVATE KEY-----",
      "key AKIAIOSFODNN7EXAMPLE",
      `ghp_${"a".repeat(36)}`,
      "password: hunter2x",
      "use token=abcd1234",
    ]) {
      expect(secretIn(s)).toBeString();
      const r = parse({ invite: "K7QF-M2XD", reason: s });
      expect(r.success).toBe(false);
      expect(r.issues?.[0]?.message).toContain("never put a secret in it");
    }
    for (const s of [
      "debug commit 3f2c1a9b8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b",
      "why does the password reset page 500?",
      "check the api key rotation job's logs",
    ])
      expect(secretIn(s)).toBeUndefined();
  });

  test("numbers are bounded and defaults filled in", () => {
    expect(v.parse(ShellRunInput, { session: "s-1", input: "ls" }).wait_ms).toBe(2000);
    expect(v.safeParse(ShellRunInput, { session: "s-1", input: "ls", wait_ms: 60_001 }).success).toBe(false);
    expect(v.parse(ShareInviteInput, { share: "sh-1" }).count).toBe(1);
    expect(v.safeParse(ShareInviteInput, { share: "sh-1", count: 11 }).success).toBe(false);
    expect(v.safeParse(AccessRequestInput, { invite: "K7QF-M2XD", reason: "x", timeout_s: 0 }).success).toBe(false);
  });
});

test("every input advertises a strict JSON Schema; checks JSON Schema cannot express are left out, not fatal", () => {
  const schema = toolInput(AccessRequestInput)["~standard"].jsonSchema.input({ target: "draft-2020-12" }) as Record<
    string,
    unknown
  >;
  expect(schema).toMatchObject({ type: "object", required: ["invite", "reason"], additionalProperties: false });
  expect(Object.keys(schema.properties as object).sort()).toEqual(["invite", "local", "reason", "timeout_s"]);
  expect((schema.properties as Record<string, { maxLength?: number }>).reason!.maxLength).toBe(500);
});
