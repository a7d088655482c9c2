// Unit and property tests for src/pki/delegation.ts and receipt-chain.ts: a delegation vouches only for its
// approver's key, for its shares, until its expiry, under the host key that signed it; any edit breaks it.
import { expect, test } from "bun:test";
import { createPublicKey } from "node:crypto";
import fc from "fast-check";
import { exportPrivateKeyPem, generateKeyPair } from "../../src/pki/index.ts";
import {
  approverKey,
  type Delegation,
  DelegationError,
  delegationProblem,
  delegationSigner,
  describeDelegation,
  parseDelegation,
  signDelegation,
} from "../../src/pki/delegation.ts";
import { receiptChainProblem } from "../../src/wire/receipt-chain.ts";
import { signReceipt } from "../../src/wire/receipt.ts";

const GUEST = `SHA256:${"G".repeat(43)}`;
const DAY = 24 * 3600_000;
const T0 = Date.UTC(2026, 11, 1);
const newKey = async () => exportPrivateKeyPem((await generateKeyPair()).privateKey);
const pub = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "der" }).toString("base64");
const [host, other, laptop, phone] = await Promise.all([newKey(), newKey(), newKey(), newKey()]);

function delegate(o: Partial<{ shares: "*" | string[]; expiresAt: number; key: string; approver: string }> = {}) {
  return signDelegation(o.key ?? host, {
    name: "laptop",
    hostName: "build-01",
    approverPub: pub(o.approver ?? laptop),
    shares: o.shares ?? ["db"],
    issuedAt: T0,
    expiresAt: o.expiresAt ?? T0 + 90 * DAY,
  });
}
const hostKey = delegationSigner(delegate());

test("a delegation verifies for its host key, share and time; each refusal is typed", () => {
  const d = delegate({ shares: ["db", "web"] });
  expect(delegationProblem(d, { hostKey, shareId: "db", at: T0 + DAY })).toBeUndefined();
  expect(delegationProblem(d, { hostKey, shareId: "web", at: T0 + DAY })).toBeUndefined();
  const refusal = (x: Delegation, e: Partial<Parameters<typeof delegationProblem>[1]> = {}) =>
    delegationProblem(x, { hostKey, shareId: "db", at: T0 + DAY, ...e })?.refusal;
  expect(refusal(delegate({ key: other }))).toBe("wrong_signer");
  expect(refusal(d, { at: T0 + 91 * DAY })).toBe("expired");
  expect(refusal(d, { at: T0 - 1 })).toBe("expired");
  expect(refusal(d, { shareId: "shell-box" })).toBe("share_not_covered");
  expect(refusal(d, { revoked: (x) => (x.body.id === d.body.id ? "was removed by the host" : undefined) })).toBe(
    "removed",
  );
  expect(refusal({ ...d, body: { ...d.body, shares: "*" } })).toBe("bad_signature");
  expect(refusal({ ...d, body: { ...d.body, approverPub: pub(phone) } })).toBe("bad_signature");
  expect(delegationProblem(delegate({ shares: "*" }), { hostKey, shareId: "anything", at: T0 })).toBeUndefined();
  expect(approverKey(d)).toMatch(/^SHA256:/);
  expect(describeDelegation(d)).toBe("approved by laptop, delegated by host build-01 until 2027-03-01");
});

test("share lists cannot be re-cut: ['a','b'] and ['ab'] sign different messages", () => {
  const d = delegate({ shares: ["a", "b"] });
  expect(delegationProblem({ ...d, body: { ...d.body, shares: ["ab"] } }, { hostKey, at: T0 })?.refusal).toBe(
    "bad_signature",
  );
});

test("the receipt chain: host key -> delegation -> approver's receipt, with the receipt's own rules", () => {
  const d = delegate();
  const fields = {
    requestId: "r-1",
    shareId: "db",
    guestKey: GUEST,
    target: "127.0.0.1:5432",
    decision: "allow" as const,
    scope: { ttlMs: 900_000 },
    at: T0 + DAY,
  };
  const expect_ = { ...fields, hostKey, now: T0 + DAY + 1000 };
  const r = signReceipt(laptop, fields, d);
  expect(receiptChainProblem(r, expect_)).toBeUndefined();
  // the approver's receipt without its delegation, or with another one, does not pass
  expect(receiptChainProblem({ body: r.body, sig: r.sig }, expect_)).toMatch(/names delegation .* but carries none/);
  const phoneD = signDelegation(host, { ...d.body, id: undefined, approverPub: pub(phone) });
  expect(receiptChainProblem({ ...r, delegation: phoneD }, expect_)).toMatch(/its signature covers/);
  // a delegation to another key than the receipt's signer
  const wrongKey = signDelegation(host, { ...d.body, id: d.body.id, approverPub: pub(phone) });
  expect(receiptChainProblem({ ...r, delegation: wrongKey }, expect_)).toMatch(/signed by SHA256:.*not by/);
  // a delegation made by another host's key (a coordinator's own)
  const forged = signReceipt(laptop, fields, delegate({ key: other }));
  expect(receiptChainProblem(forged, expect_)).toMatch(/signed by .* not by this host's key/);
  // expired now, or at signing time
  expect(receiptChainProblem(r, { ...expect_, now: T0 + 91 * DAY })).toMatch(/is valid .* not at/);
  const late = signReceipt(laptop, { ...fields, at: T0 + 95 * DAY }, d);
  expect(receiptChainProblem(late, { ...expect_, now: undefined })).toMatch(/is valid .* not at/);
  // removed
  expect(receiptChainProblem(r, { ...expect_, revoked: () => "was removed by the host" })).toMatch(
    /was removed by the host/,
  );
  // a share outside the delegation, signed correctly by the approver
  const outside = signReceipt(laptop, { ...fields, shareId: "prod" }, d);
  expect(receiptChainProblem(outside, { ...expect_, shareId: "prod" })).toMatch(/not for share prod/);
  // the narrowing rules still apply: another guest key, another request
  expect(receiptChainProblem(r, { ...expect_, guestKey: `SHA256:${"H".repeat(43)}` })).toMatch(/approves guest key/);
  expect(receiptChainProblem(r, { ...expect_, requestId: "r-2" })).toMatch(/for request r-1, not r-2/);
  // a host-signed receipt still verifies directly
  expect(receiptChainProblem(signReceipt(host, fields), expect_)).toBeUndefined();
});

const idArb = fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/);
const bodyArb = fc.record({
  name: fc.stringMatching(/^[A-Za-z0-9_.-]{1,32}$/),
  hostName: fc.stringMatching(/^[a-z0-9 .-]{0,20}$/),
  shares: fc.oneof(fc.constant("*" as const), fc.array(idArb, { minLength: 1, maxLength: 5 })),
  issuedAt: fc.integer({ min: 0, max: 2 ** 42 }),
  life: fc.integer({ min: 1, max: 2 ** 36 }),
});

test("property: any signed delegation survives JSON and verifies inside its window for each share it names", () => {
  fc.assert(
    fc.property(bodyArb, (b) => {
      const d = signDelegation(host, {
        name: b.name,
        hostName: b.hostName,
        approverPub: pub(laptop),
        shares: b.shares,
        issuedAt: b.issuedAt,
        expiresAt: b.issuedAt + b.life,
      });
      const back = parseDelegation(JSON.parse(JSON.stringify(d)));
      const share = b.shares === "*" ? "x" : b.shares[0];
      expect(delegationProblem(back, { hostKey, shareId: share, at: b.issuedAt })).toBeUndefined();
      expect(delegationProblem(back, { hostKey, shareId: share, at: b.issuedAt + b.life })?.refusal).toBe("expired");
    }),
    { numRuns: 60 },
  );
});

test("property: changing any one signed field breaks the signature", () => {
  const d = delegate({ shares: ["db", "web"] });
  const edits: ((b: Delegation["body"]) => Delegation["body"])[] = [
    (b) => ({ ...b, id: `${b.id}x` }),
    (b) => ({ ...b, name: `${b.name}x` }),
    (b) => ({ ...b, hostName: `${b.hostName}x` }),
    (b) => ({ ...b, approverPub: pub(phone) }),
    (b) => ({ ...b, shares: [...(b.shares as string[]), "x"] }),
    (b) => ({ ...b, shares: "*" }),
    (b) => ({ ...b, issuedAt: b.issuedAt - 1 }),
    (b) => ({ ...b, expiresAt: b.expiresAt + 1 }),
  ];
  fc.assert(
    fc.property(fc.integer({ min: 0, max: edits.length - 1 }), (i) => {
      const edited = { ...d, body: edits[i]!(d.body) };
      expect(delegationProblem(edited, { hostKey, at: T0 })?.refusal).toBe("bad_signature");
    }),
  );
});

test("property: the parser takes any JSON and either returns a delegation or throws DelegationError", () => {
  const d = delegate();
  const mutated = fc.oneof(
    fc.jsonValue(),
    fc.record({ body: fc.jsonValue(), sig: fc.jsonValue() }),
    fc
      .tuple(fc.constantFrom(...Object.keys(d.body)), fc.jsonValue())
      .map(([k, val]) => ({ body: { ...d.body, [k]: val }, sig: d.sig })),
    fc.tuple(fc.string(), fc.jsonValue()).map(([k, val]) => ({ body: { ...d.body, [k]: val }, sig: d.sig })),
  );
  fc.assert(
    fc.property(mutated, (json) => {
      let parsed: Delegation | undefined;
      try {
        parsed = parseDelegation(json);
      } catch (err) {
        expect(err).toBeInstanceOf(DelegationError);
        expect((err as DelegationError).refusal).toBe("malformed");
        return;
      }
      // what parses is checked without a throw: it verifies or it is refused with a reason
      const why = delegationProblem(parsed, { hostKey, shareId: "db", at: T0 + DAY });
      if (why) expect(why).toBeInstanceOf(DelegationError);
    }),
    { numRuns: 400 },
  );
});
