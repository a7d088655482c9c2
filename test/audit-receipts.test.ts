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
