// Unit tests for src/wire/receipt.ts: a receipt verifies only for its signer and exactly what it says.
import { expect, test } from "bun:test";
import { exportPrivateKeyPem, generateKeyPair } from "../../src/pki/index.ts";
import { receiptProblem, receiptSigner, signReceipt } from "../../src/wire/receipt.ts";

const GUEST = `SHA256:${"G".repeat(43)}`;

test("a receipt verifies for its host key and exactly its decision; any edit or another signer is caught", async () => {
  const key = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  const other = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  const r = signReceipt(key, {
    requestId: "r-1",
    shareId: "db",
    guestKey: GUEST,
    target: "127.0.0.1:5432",
    decision: "allow",
    scope: { streams: 1, ttlMs: 60_000 },
    at: 1,
  });
  const hostKey = receiptSigner(r);
  const expect_ = {
    hostKey,
    guestKey: GUEST,
    target: "127.0.0.1:5432",
    decision: "allow" as const,
    requestId: "r-1",
    scope: { ttlMs: 60_000, streams: 1 },
  };
  expect(receiptProblem(r, expect_)).toBeUndefined();
  expect(receiptProblem({ ...r, body: { ...r.body, decision: "deny" } }, { ...expect_, decision: "deny" })).toBe(
    "its signature does not verify",
  );
  expect(
    receiptProblem({ ...r, body: { ...r.body, scope: { streams: 2 } } }, { ...expect_, scope: { streams: 2 } }),
  ).toBe("its signature does not verify");
  expect(receiptProblem(r, { ...expect_, guestKey: `SHA256:${"H".repeat(43)}` })).toMatch(
    /^it approves guest key SHA256:G+, not SHA256:H+$/,
  );
  expect(receiptProblem(r, { ...expect_, scope: { streams: 1 } })).toBe("its scope is not the session's");
  const forged = signReceipt(other, {
    requestId: "r-1",
    shareId: "db",
    guestKey: GUEST,
    target: "127.0.0.1:5432",
    decision: "allow",
    scope: { streams: 1, ttlMs: 60_000 },
    at: 1,
  });
  expect(receiptProblem(forged, expect_)).toMatch(/^it is signed by SHA256:\S+, not by the host's key /);
  expect(receiptProblem({ ...r, sig: forged.sig }, expect_)).toBe("its signature does not verify");
});

test("a receipt may name the guest's identity key, and the signature covers it", async () => {
  const key = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  const guestId = `SHA256:${"I".repeat(43)}`;
  const r = signReceipt(key, {
    requestId: "r-1",
    shareId: "db",
    guestKey: GUEST,
    target: "127.0.0.1:5432",
    decision: "allow",
    at: 1,
    guestId,
  });
  const want = { hostKey: receiptSigner(r), guestKey: GUEST, target: "127.0.0.1:5432", decision: "allow" as const };
  expect(r.body.guestId).toBe(guestId);
  expect(receiptProblem(r, want)).toBeUndefined();
  expect(receiptProblem({ ...r, body: { ...r.body, guestId: `SHA256:${"J".repeat(43)}` } }, want)).toBe(
    "its signature does not verify",
  );
  const { guestId: _dropped, ...without } = r.body;
  expect(receiptProblem({ ...r, body: without }, want)).toBe("its signature does not verify");
});
