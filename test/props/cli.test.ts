// Property tests for what a person types into tessera's terminal side (cli/): invites on `join`'s command
// line or stdin (cli/invite.ts), the host's answer at the prompt (cli/answer.ts) and durations, sizes and
// counts in flags (cli/duration.ts). Whole strings, not streams: (a) any text gives a value or a typed
// error, and a value is well formed; (b) what tessera prints (an invite, a scope) reads back as itself.
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { parseAnswer } from "../../src/cli/answer.ts";
import { MAX_TIMER_MS, parseCount, parseDuration, parseSize } from "../../src/cli/duration.ts";
import { cleanInvite, splitInvite } from "../../src/cli/invite.ts";
import { ConfigError, TesseraError } from "../../src/errors.ts";
import { parseInvite } from "../../src/mcp/schemas.ts";
import { formatTarget } from "../../src/wire/address.ts";
import { CODE_ALPHABET, formatCode, normalizeCode } from "../../src/wire/codes.ts";
import { Scope } from "../../src/wire/scope.ts";
import { fc, typedOrValue } from "./fc.ts";

const code = fc.string({ unit: fc.constantFrom(...CODE_ALPHABET), minLength: 8, maxLength: 8 });
const host = fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6()).filter((h) => h.length < 200);
const port = fc.integer({ min: 1, max: 65535 });
/** Invite-shaped text: address pieces, slashes, code characters, and anything else. */
const inviteish = fc.oneof(
  fc.string({ unit: fc.constantFrom("/", ":", "[", "]", "1", "8", "a", "K", "-", ".", " "), maxLength: 24 }),
  fc.tuple(host, port, code, fc.constantFrom("/", "//", ":")).map(([h, p, c, s]) => `${formatTarget(h, p)}${s}${c}`),
  fc.string({ unit: "binary", maxLength: 30 }),
);

describe("invites", () => {
  test("(a) splitInvite: any text is a code with or without an address, or a bad_address TesseraError", () => {
    fc.assert(
      fc.property(inviteish, (s) => {
        const r = typedOrValue(() => splitInvite(s), TesseraError);
        if (r instanceof Error) return void expect((r as TesseraError).code).toBe("bad_address");
        expect(r.code).not.toContain("/");
        // What was pasted is cleaned first (spaces, a pasted `tessera join` line, flags): the parts are the cleaned text.
        expect(r.address === undefined ? r.code : `${r.address}/${r.code}`).toBe(cleanInvite(s));
        expect(cleanInvite(cleanInvite(s))).toBe(cleanInvite(s));
      }),
    );
  });

  test("(b) an invite as the host's terminal prints it reads back to its address and code, in both parsers", () => {
    fc.assert(
      fc.property(host, port, code, (h, p, c) => {
        const address = formatTarget(h, p);
        const invite = `${address}/${formatCode(c)}`;
        const cli = splitInvite(invite);
        expect(cli.address).toBe(address);
        expect(normalizeCode(cli.code)).toBe(c);
        expect(parseInvite(invite)).toEqual({ address, code: formatCode(c) });
        expect(splitInvite(formatCode(c))).toEqual({ code: formatCode(c) });
      }),
    );
  });

  test("(a) the MCP tool's invite parser takes any text, and agrees with join's wherever it accepts one", () => {
    fc.assert(
      fc.property(inviteish, (s) => {
        const r = typedOrValue(() => parseInvite(s), TesseraError);
        if (r instanceof Error) return;
        const cli = splitInvite(s);
        expect(cli.address).toBe(r.address);
        expect(normalizeCode(cli.code)).toBe(normalizeCode(r.code));
      }),
    );
  });
});

/** Answer-shaped text: y/n/ro, numbers with units, reasons with control characters, and anything else. */
const answerish = fc.oneof(
  fc
    .array(
      fc.oneof(
        fc.constantFrom(
          "y",
          "Y",
          "yes",
          "n",
          "no",
          "ro",
          "RO",
          "?",
          "h",
          "help",
          "0",
          "1",
          "4096",
          "4097",
          "15m",
          "0s",
          "999999s",
          "169h",
          "168h",
        ),
        fc.string({ unit: "binary", maxLength: 6 }),
        fc.string({ unit: fc.constantFrom("\x00", "\x1b", "\n", "\t", "\x7f", " "), maxLength: 3 }),
      ),
      { maxLength: 5 },
    )
    .map((w) => w.join(" ")),
  fc.string({ unit: "binary", maxLength: 40 }),
);

describe("the host's answer", () => {
  test("(a) any line is an answer; a yes carries a scope the frame accepts, a no a plain reason of 200 at most", () => {
    fc.assert(
      fc.property(answerish, fc.boolean(), (line, shell) => {
        const a = parseAnswer(line, shell);
        if ("allow" in a && a.allow && a.scope) {
          expect(v.is(Scope, a.scope)).toBe(true);
          if (!shell) expect(a.scope.readOnly).toBeUndefined();
        }
        if ("allow" in a && !a.allow && a.reason !== undefined) {
          expect(a.reason.length).toBeGreaterThan(0);
          expect(a.reason.length).toBeLessThanOrEqual(200);
          expect(a.reason).not.toMatch(/[\x00-\x1f\x7f]/);
        }
      }),
    );
  });

  test("(b) a scope written as the prompt's help says (y 15m 1 ro, in any order) reads back as that scope", () => {
    const scope = fc.record(
      {
        ttlMs: fc.integer({ min: 1, max: 7 * 86_400 }).map((s) => s * 1000),
        streams: fc.integer({ min: 1, max: 4096 }),
        readOnly: fc.constant(true as const),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(scope, fc.boolean(), fc.nat(), (s, upper, turn) => {
        const ttl =
          s.ttlMs === undefined
            ? []
            : [
                s.ttlMs % 3_600_000 === 0
                  ? `${s.ttlMs / 3_600_000}h`
                  : s.ttlMs % 60_000 === 0
                    ? `${s.ttlMs / 60_000}m`
                    : `${s.ttlMs / 1000}s`,
              ];
        const words = [...ttl, ...(s.streams === undefined ? [] : [String(s.streams)]), ...(s.readOnly ? ["ro"] : [])];
        const k = words.length ? turn % words.length : 0;
        const line = ["y", ...words.slice(k), ...words.slice(0, k)].join(" ");
        const got = parseAnswer(upper ? line.toUpperCase() : line, true);
        expect(got).toEqual(Object.keys(s).length ? { allow: true, scope: s } : { allow: true });
      }),
    );
  });
});

describe("flags", () => {
  test("(a) durations, sizes and counts: a positive number (or 0 for a size) or a ConfigError naming the flag", () => {
    const text = fc.oneof(
      fc
        .tuple(
          fc.stringMatching(/^\d{1,4}(\.\d{1,2})?$/),
          fc.constantFrom("", "ms", "s", "m", "h", "k", "MiB", "g", "x", " kb"),
        )
        .map(([n, u]) => n + u),
      // Long numbers: past a timer's reach, and past what a double holds at all.
      fc.tuple(fc.stringMatching(/^[1-9]\d{6,400}$/), fc.constantFrom("", "ms", "h")).map(([n, u]) => n + u),
      fc.string({ unit: "binary", maxLength: 12 }),
    );
    fc.assert(
      fc.property(text, (s) => {
        for (const [parse, min, max] of [
          [parseDuration, Number.MIN_VALUE, MAX_TIMER_MS],
          [parseSize, 0, Number.POSITIVE_INFINITY],
          [parseCount, 1, Number.MAX_SAFE_INTEGER],
        ] as const) {
          const r = typedOrValue(() => parse(s, "flag"), ConfigError);
          if (r instanceof Error) expect(r.message).toStartWith("--flag must be");
          else {
            expect(r).toBeGreaterThanOrEqual(min);
            expect(r).toBeLessThanOrEqual(max);
          }
        }
      }),
    );
  });
});
