// Unit tests for src/audit/receipts.ts: a receipt in the chain must be the share's host's, and say what its line says.
import { expect, test } from "bun:test";
import { ReceiptCheck } from "../src/audit/receipts.ts";
import { exportPrivateKeyPem, generateKeyPair } from "../src/pki/index.ts";
import { receiptSigner, signReceipt, type Receipt } from "../src/wire/receipt.ts";

const GUEST = `SHA256:${"G".repeat(43)}`;
const line = (seq: number, event: string, f: Record<string, unknown>) => ({
  seq,
  ts: new Date(0).toISOString(),
  event,
  prev: "0".repeat(64),
  ...f,
});

async function receiptBy(scope?: { streams: number }): Promise<Receipt> {
  const key = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  return signReceipt(key, {
    requestId: "r-1",
    shareId: "db",
    guestKey: GUEST,
    target: "127.0.0.1:5432",
    decision: "allow",
    ...(scope ? { scope } : {}),
    at: 1,
  });
}

test("a receipt signed by the share's host and matching its line passes", async () => {
  const r = await receiptBy({ streams: 1 });
  const c = new ReceiptCheck();
  expect(c.line(line(1, "share.open", { shareId: "db", hostKey: receiptSigner(r) }))).toBeUndefined();
  expect(
    c.line(line(2, "approve", { shareId: "db", requestId: "r-1", guestKey: GUEST, receipt: JSON.stringify(r) })),
  ).toBeUndefined();
  expect(c.valid).toBe(1);
});

test("a receipt signed by a key that is not the share's host fails, as does an edited scope", async () => {
  const host = await receiptBy();
  const forged = await receiptBy();
  const c = new ReceiptCheck();
  c.line(line(1, "share.open", { shareId: "db", hostKey: receiptSigner(host) }));
  expect(
    c.line(line(2, "approve", { shareId: "db", requestId: "r-1", guestKey: GUEST, receipt: JSON.stringify(forged) })),
  ).toMatch(/^has a consent receipt that does not match it: it is signed by SHA256:\S+, not by the host's key /);
  const edited = { ...host, body: { ...host.body, scope: { streams: 9 } } };
  expect(
    c.line(line(3, "approve", { shareId: "db", requestId: "r-1", guestKey: GUEST, receipt: JSON.stringify(edited) })),
  ).toBe("has a consent receipt that does not match it: its signature does not verify");
  expect(
    c.line(line(4, "deny", { shareId: "db", requestId: "r-1", guestKey: GUEST, receipt: JSON.stringify(host) })),
  ).toBe('has a consent receipt that does not match it: it records "allow", not "deny"');
  expect(c.line(line(5, "approve", { shareId: "db", requestId: "r-1", guestKey: GUEST, receipt: "{not json" }))).toBe(
    "carries a consent receipt that is not one",
  );
});

// Found by the property tests (test/props/wire-consent.test.ts): a receipt whose hostPub is not a key,
// on a share the log never opened, threw a PkiError out of the check and stopped `audit verify`.
test("a receipt whose signing key is not a key is reported for its line, not thrown", () => {
  const receipt = {
    body: { v: 1, requestId: "_", shareId: "A", guestKey: GUEST, target: "", decision: "allow", at: 0, hostPub: "0" },
    sig: "/",
  };
  const c = new ReceiptCheck();
  expect(
    c.line(line(1, "approve", { shareId: "A", requestId: "_", guestKey: GUEST, receipt: JSON.stringify(receipt) })),
  ).toBe("carries a consent receipt whose signing key is not a public key");
  expect(c.valid).toBe(0);
});

test("finding 8 (issue 27): a coordinator that records its own key as the share's host passes unless the host key is pinned; a key change is reported", async () => {
  const real = await receiptBy();
  const madeUp = await receiptBy();
  const chain = [
    line(1, "share.open", { shareId: "db", hostKey: receiptSigner(real) }),
    // The coordinator says the share came back under its own key, and logs an approval it signed itself.
    line(2, "share.back", { shareId: "db", hostKey: receiptSigner(madeUp) }),
    line(3, "approve", { shareId: "db", requestId: "r-1", guestKey: GUEST, receipt: JSON.stringify(madeUp) }),
  ];
  const unpinned = new ReceiptCheck();
  expect(chain.map((l) => unpinned.line(l))).toEqual([undefined, undefined, undefined]);
  expect(unpinned.keyChanges).toEqual([
    `share db's host key changed from ${receiptSigner(real)} to ${receiptSigner(madeUp)} (seq 2): the same share id served by another key`,
  ]);
  const pinned = new ReceiptCheck([receiptSigner(real)]);
  expect(chain.map((l) => pinned.line(l))[2]).toBe(
    `has a consent receipt signed by ${receiptSigner(madeUp)}, which is not a host key you pinned (--host-key)`,
  );
  const ok = new ReceiptCheck([receiptSigner(real)]);
  expect(
    ok.line(line(1, "approve", { shareId: "db", requestId: "r-1", guestKey: GUEST, receipt: JSON.stringify(real) })),
  ).toBeUndefined();
});

test("receipts are signed length-prefixed (v2); an old newline-joined v1 receipt still verifies, and relabelling one as the other breaks it", async () => {
  const { sign } = await import("node:crypto");
  const { receiptProblem } = await import("../src/wire/receipt.ts");
  const key = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  const v2 = signReceipt(key, {
    requestId: "r-1",
    shareId: "db",
    guestKey: GUEST,
    target: "127.0.0.1:5432",
    decision: "allow",
    at: 1,
  });
  expect(v2.body.v).toBe(2);
  const b = { ...v2.body, v: 1 as const };
  const v1msg = [
    "tessera-consent-receipt-v1",
    b.requestId,
    b.shareId,
    b.guestKey,
    b.target,
    b.decision,
    "",
    b.at,
    b.hostPub,
  ].join("\n");
  const v1: Receipt = { body: b, sig: sign("sha256", Buffer.from(v1msg), key).toString("base64") };
  const expectOk = {
    hostKey: receiptSigner(v2),
    guestKey: GUEST,
    target: "127.0.0.1:5432",
    decision: "allow" as const,
  };
  expect(receiptProblem(v2, expectOk)).toBeUndefined();
  expect(receiptProblem(v1, expectOk)).toBeUndefined();
  expect(receiptProblem({ ...v2, body: { ...v2.body, v: 1 } }, expectOk)).toBe("its signature does not verify");
  expect(receiptProblem({ ...v1, body: { ...v1.body, v: 2 } }, expectOk)).toBe("its signature does not verify");
});

test("issue 30: a delegated receipt passes through its chain and says who approved; another host's delegation fails", async () => {
  const { createPublicKey } = await import("node:crypto");
  const { signDelegation } = await import("../src/pki/delegation.ts");
  const [host, laptop, other] = await Promise.all(
    [0, 1, 2].map(async () => exportPrivateKeyPem((await generateKeyPair()).privateKey)),
  );
  const pub = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "der" }).toString("base64");
  const delegate = (key: string) =>
    signDelegation(key, {
      name: "laptop",
      hostName: "build-01",
      approverPub: pub(laptop),
      shares: ["db"],
      issuedAt: 0,
      expiresAt: Date.UTC(2027, 2, 1),
    });
  const fields = { requestId: "r-1", shareId: "db", guestKey: GUEST, target: "127.0.0.1:5432", at: 1 };
  const good = signReceipt(laptop, { ...fields, decision: "allow" }, delegate(host));
  const hostKey = receiptSigner(signReceipt(host, { ...fields, decision: "allow" }));
  const c = new ReceiptCheck([hostKey]);
  const approve = (seq: number, r: Receipt) =>
    c.line(line(seq, "approve", { shareId: "db", requestId: "r-1", guestKey: GUEST, receipt: JSON.stringify(r) }));
  expect(approve(1, good)).toBeUndefined();
  expect(c.delegated).toEqual(["seq 1: approved by laptop, delegated by host build-01 until 2027-03-01"]);
  expect(approve(2, signReceipt(laptop, { ...fields, decision: "allow" }, delegate(other)))).toMatch(
    /which is not a host key you pinned/,
  );
  // unpinned: the recorded host key decides, and a delegation by another key does not match it
  const u = new ReceiptCheck();
  u.line(line(1, "share.open", { shareId: "db", hostKey }));
  const forged = signReceipt(laptop, { ...fields, decision: "allow" }, delegate(other));
  expect(
    u.line(line(2, "approve", { shareId: "db", requestId: "r-1", guestKey: GUEST, receipt: JSON.stringify(forged) })),
  ).toMatch(/delegation is signed by SHA256:\S+, not by this host's key/);
  expect(c.valid).toBe(1);
});
