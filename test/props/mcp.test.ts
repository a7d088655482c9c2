// Property tests for what an AI agent hands the MCP server (mcp/schemas.ts): every tool's input, the
// invite it carries (checked against join's parser in test/props/cli.test.ts) and the local address to
// listen on. Whole values: (a) any JSON or text gives a value or schema issues / a typed error, never
// another throw, and an accepted local address is always loopback; (b) a valid input reads back as itself.
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { TesseraError } from "../../src/errors.ts";
import {
  AccessRequestInput,
  parseLocal,
  SessionInput,
  ShareInviteInput,
  ShareStatusInput,
  ShellRunInput,
} from "../../src/mcp/schemas.ts";
import { fc, typedOrValue } from "./fc.ts";

const inputs = { AccessRequestInput, SessionInput, ShellRunInput, ShareInviteInput, ShareStatusInput };

describe("tool inputs", () => {
  for (const [name, schema] of Object.entries(inputs)) {
    test(`(a) ${name}: any JSON is an input or schema issues, never a throw; an input survives JSON unchanged`, () => {
      const keys = Object.keys((schema as unknown as { entries: object }).entries);
      const shaped = fc.dictionary(fc.constantFrom(...keys, "other"), fc.jsonValue(), { maxKeys: keys.length + 1 });
      fc.assert(
        fc.property(fc.oneof(fc.jsonValue(), shaped), (json) => {
          const r = v.safeParse(schema as v.GenericSchema, json);
          if (!r.success) return void expect(r.issues.length).toBeGreaterThan(0);
          expect(v.parse(schema as v.GenericSchema, JSON.parse(JSON.stringify(r.output)))).toEqual(r.output);
        }),
        { numRuns: 100 },
      );
    });
  }
});

describe("local addresses", () => {
  const localish = fc.oneof(
    fc.string({
      unit: fc.constantFrom("127.0.0.1", "::1", "[", "]", ":", "0", "8", "localhost", "10.0.0.1", " "),
      maxLength: 6,
    }),
    fc.tuple(fc.ipV4(), fc.integer({ min: -1, max: 70000 })).map(([h, p]) => `${h}:${p}`),
    fc.string({ unit: "binary", maxLength: 24 }),
    fc.constant(undefined),
  );

  test("(a) any text is a loopback host and a port, or a bad_address TesseraError", () => {
    fc.assert(
      fc.property(localish, (s) => {
        const r = typedOrValue(() => parseLocal(s), TesseraError);
        if (r instanceof Error) return void expect((r as TesseraError).code).toBe("bad_address");
        expect(r.host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(r.host)).toBe(true);
        expect(r.port).toBeGreaterThanOrEqual(0);
        expect(r.port).toBeLessThanOrEqual(65535);
      }),
    );
  });

  test("(b) a loopback address and port read back as themselves", () => {
    fc.assert(
      fc.property(
        fc.ipV4().map((ip) => `127.${ip.split(".").slice(1).join(".")}`),
        fc.integer({ min: 0, max: 65535 }),
        (h, p) => {
          expect(parseLocal(`${h}:${p}`)).toEqual({ host: h, port: p });
          expect(parseLocal(`[::1]:${p}`)).toEqual({ host: "::1", port: p });
        },
      ),
    );
  });
});
