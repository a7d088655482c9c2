// Property tests for what a decision carries and a peer may forge: scopes (wire/scope.ts), signed
// consent receipts (wire/receipt.ts, also as the audit chain reads them) and signed direct-path hints
// (wire/hints.ts, and the agent's check of them in host/hint-check.ts). These are whole values, not
// streams: (a) any input gives a value or a typed error and never another throw, (b) what is signed or
// encoded reads back exactly, and a change anywhere is caught.
import { beforeAll, describe, expect, test } from "bun:test";
import { createPublicKey } from "node:crypto";
import * as v from "valibot";
import { ReceiptCheck } from "../../src/audit/receipts.ts";
import { checkHints } from "../../src/host/hint-check.ts";
import { exportPrivateKeyPem, generateKeyPair, PkiError, spkiFingerprint } from "../../src/pki/index.ts";
import { hintBytes, hintsProblem, signHints, type HintRole } from "../../src/wire/hints.ts";
import { hint, MAX_HINTS_IN_FRAME } from "../../src/wire/protocol.ts";
import { Receipt, receiptProblem, receiptSigner, signReceipt } from "../../src/wire/receipt.ts";
import { describeScope, Scope, streamRefusal, timeOver } from "../../src/wire/scope.ts";
import { arbitraryOf, fc, typedOrValue } from "./fc.ts";

const keys: { pem: string; spki: string }[] = [];
beforeAll(async () => {
  for (let i = 0; i < 2; i++) {
    const pem = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
    const pub = createPublicKey(pem).export({ type: "spki", format: "der" }).toString("base64");
    keys.push({ pem, spki: spkiFingerprint(pub) });
  }
});

/** Any JSON, or a valid value with one field replaced by any JSON. */
const nearly = (schema: v.GenericSchema) =>
  fc.oneof(
    fc.jsonValue(),
    fc.tuple(arbitraryOf(schema), fc.nat(), fc.jsonValue()).map(([x, i, j]) => {
      const o = { ...(x as Record<string, unknown>) };
      const k = Object.keys(o)[i % Math.max(1, Object.keys(o).length)] ?? "x";
      o[k] = j;
      return o;
    }),
  );

describe("scopes", () => {
  test("(a) any JSON is a scope or schema issues; a scope always reads and judges without throwing", () => {
    fc.assert(
      fc.property(nearly(Scope), fc.nat(), fc.integer(), fc.integer(), (json, opened, since, now) => {
        const r = v.safeParse(Scope, json);
        if (!r.success) return void expect(r.issues.length).toBeGreaterThan(0);
        expect(typeof describeScope(r.output)).toBe("string");
        for (const why of [streamRefusal(r.output, opened, since, now), timeOver(r.output, since, now)])
          expect(why === undefined || why.length > 0).toBe(true);
      }),
    );
  });

  test("(b) a scope survives JSON and the schema unchanged, and a stream past its count is refused", () => {
    fc.assert(
      fc.property(arbitraryOf(Scope), (s) => {
        const scope = s as Scope;
        expect(v.parse(Scope, JSON.parse(JSON.stringify(scope)))).toEqual(scope);
        if (scope.streams !== undefined) {
          expect(streamRefusal(scope, scope.streams, 0, 0)).toBeString();
          expect(streamRefusal({ streams: scope.streams }, scope.streams - 1, 0, 0)).toBeUndefined();
        }
      }),
    );
  });
});

describe("receipts", () => {
  const body = fc.record({
    requestId: fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/),
    shareId: fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/),
    guestKey: fc.stringMatching(/^SHA256:[A-Za-z0-9+/]{43}$/),
    target: fc.string({ maxLength: 300 }),
    decision: fc.constantFrom("allow" as const, "deny" as const),
    scope: fc.option(arbitraryOf(Scope) as fc.Arbitrary<Scope>, { nil: undefined }),
    at: fc.maxSafeNat(),
  });
  const expectOf = (r: Receipt, hostKey: string) => ({
    hostKey,
    guestKey: r.body.guestKey,
    target: r.body.target,
    decision: r.body.decision,
    requestId: r.body.requestId,
    scope: r.body.scope,
  });

  test("(a) any receipt-shaped JSON: a problem in words, never a throw; its signer is a key or a PkiError", () => {
    fc.assert(
      fc.property(fc.oneof(arbitraryOf(Receipt), nearly(Receipt)), (json) => {
        const r = v.safeParse(Receipt, json);
        if (!r.success) return;
        const signer = typedOrValue(() => receiptSigner(r.output), PkiError);
        const why = receiptProblem(r.output, expectOf(r.output, keys[0]!.spki));
        expect(why).toBeString();
        if (!(signer instanceof Error)) expect(signer).toMatch(/^SHA256:/);
      }),
      { numRuns: 100 },
    );
  });

  test("(a) the audit chain's check of a receipt says what is wrong with any receipt, and never throws", () => {
    fc.assert(
      fc.property(arbitraryOf(Receipt), fc.boolean(), (receipt, known) => {
        const check = new ReceiptCheck();
        if (known) check.line({ event: "share.open", shareId: "s", hostKey: keys[0]!.spki } as never);
        const line = {
          event: "approve",
          shareId: "s",
          guestKey: "g",
          requestId: "r",
          receipt: JSON.stringify(receipt),
        };
        expect(check.line(line as never)).toBeString();
      }),
      { numRuns: 100 },
    );
  });

  test("(b) a signed receipt verifies for exactly what it says, through JSON; any other expectation is refused", () => {
    fc.assert(
      fc.property(body, fc.nat(5), (b, which) => {
        const r = signReceipt(keys[0]!.pem, b);
        const back = v.parse(Receipt, JSON.parse(JSON.stringify(r)));
        expect(back).toEqual(r);
        expect(receiptSigner(back)).toBe(keys[0]!.spki);
        const good = expectOf(back, keys[0]!.spki);
        expect(receiptProblem(back, good)).toBeUndefined();
        const off = [
          { hostKey: keys[1]!.spki },
          { guestKey: `SHA256:${"Z".repeat(43)}` },
          { target: `${b.target}x` },
          { decision: b.decision === "allow" ? ("deny" as const) : ("allow" as const) },
          { requestId: `${b.requestId}x` },
          { scope: { streams: (b.scope?.streams ?? 0) + 1 } },
        ][which]!;
        if (!("guestKey" in off && off.guestKey === b.guestKey))
          expect(receiptProblem(back, { ...good, ...off })).toBeString();
      }),
      { numRuns: 60 },
    );
  });
});

describe("direct-path hints", () => {
  const hints = fc.array(arbitraryOf(hint) as fc.Arbitrary<{ host: string; port: number }>, { maxLength: 6 });
  const sessionId = fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/);
  const role = fc.constantFrom<HintRole>("guest", "host");

  /** Reads hintBytes back: each field is "<byte length>:<field>", joined by newlines. */
  function fieldsOf(bytes: Buffer): string[] {
    const out: string[] = [];
    let i = 0;
    while (i < bytes.length) {
      const colon = bytes.indexOf(0x3a, i);
      const n = Number(bytes.subarray(i, colon).toString());
      out.push(bytes.subarray(colon + 1, colon + 1 + n).toString());
      i = colon + 1 + n + 1;
    }
    return out;
  }

  test("(a) any signed-hints frame gives a problem in words or none, never a throw", () => {
    fc.assert(
      fc.property(
        sessionId,
        hints,
        fc.oneof(fc.stringMatching(/^[A-Za-z0-9+/=]{0,400}$/), fc.constant("")),
        fc.stringMatching(/^[A-Za-z0-9+/=]{0,200}$/),
        role,
        (sid, hs, key, sig, r) => {
          expect(hintsProblem({ sessionId: sid, hints: hs, key, sig }, r, keys[0]!.spki)).toBeString();
        },
      ),
      { numRuns: 100 },
    );
  });

  test("(a) the agent's check takes any hints: each is dialled, refused or over, and at most the cap are dialled", () => {
    fc.assert(
      fc.property(
        fc.array(arbitraryOf(hint) as fc.Arbitrary<{ host: string; port: number }>, { maxLength: 40 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 10 }),
        (hs, loop, cap) => {
          fc.pre(hs.length <= MAX_HINTS_IN_FRAME);
          const out = checkHints(hs, { guestOnLoopback: loop, cap });
          expect(out.dial.length + out.refused.length + out.over).toBe(hs.length);
          expect(out.dial.length).toBeLessThanOrEqual(cap);
          expect(out.offered).toBe(hs.length);
        },
      ),
    );
  });

  test("(b) signed hints verify for their session, role and key; the signed bytes read back to exactly those fields", () => {
    fc.assert(
      fc.property(sessionId, hints, role, (sid, hs, r) => {
        const f = signHints(keys[0]!.pem, sid, r, hs);
        expect(hintsProblem(JSON.parse(JSON.stringify(f)), r, keys[0]!.spki)).toBeUndefined();
        expect(hintsProblem(f, r === "guest" ? "host" : "guest", keys[0]!.spki)).toBeString();
        expect(hintsProblem(f, r, keys[1]!.spki)).toBeString();
        expect(hintsProblem({ ...f, hints: [...hs, { host: "10.0.0.1", port: 1 }] }, r, keys[0]!.spki)).toBeString();
        expect(fieldsOf(hintBytes(sid, r, hs))).toEqual([
          "tessera-direct-hints-v1",
          r,
          sid,
          ...hs.map((h) => `${h.host} ${h.port}`),
        ]);
      }),
      { numRuns: 40 },
    );
  });
});
