// Direct-path hints are signed by the offering side's session key: a coordinator cannot add, change or move them.
import { describe, expect, test } from "bun:test";
import { exportPrivateKeyPem, generateKeyPair } from "../../src/pki/index.ts";
import { spkiFingerprint } from "../../src/pki/fingerprint.ts";
import { createPublicKey } from "node:crypto";
import { hintsProblem, signHints } from "../../src/wire/hints.ts";

async function key(): Promise<{ pem: string; spki: string }> {
  const pem = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  return { pem, spki: spkiFingerprint(createPublicKey(pem).export({ type: "spki", format: "der" }).toString("base64")) };
}

describe("hint signatures", async () => {
  const guest = await key();
  const other = await key();
  const hints = [{ host: "192.168.1.20", port: 40001 }, { host: "127.0.0.1", port: 40001 }];

  test("hints signed by the pinned key verify", () => {
    expect(hintsProblem(signHints(guest.pem, "s-1", "guest", hints), "guest", guest.spki)).toBeUndefined();
  });

  test("an added, changed or dropped hint fails", () => {
    const f = signHints(guest.pem, "s-1", "guest", hints);
    expect(hintsProblem({ ...f, hints: [...hints, { host: "10.0.0.9", port: 22 }] }, "guest", guest.spki)).toContain("does not verify");
    expect(hintsProblem({ ...f, hints: [{ ...hints[0]!, port: 40002 }, hints[1]!] }, "guest", guest.spki)).toContain("does not verify");
    expect(hintsProblem({ ...f, hints: [hints[1]!] }, "guest", guest.spki)).toContain("does not verify");
  });

  test("another key, even with a valid signature of its own, fails", () => {
    const f = signHints(other.pem, "s-1", "guest", hints);
    expect(hintsProblem(f, "guest", guest.spki)).toContain("not the guest's key");
  });

  test("hints replayed into another session, or passed off as the other side's, fail", () => {
    const f = signHints(guest.pem, "s-1", "guest", hints);
    expect(hintsProblem({ ...f, sessionId: "s-2" }, "guest", guest.spki)).toContain("does not verify");
    expect(hintsProblem(f, "host", guest.spki)).toContain("does not verify");
  });

  test("garbage key or signature is a refusal, not a crash", () => {
    const f = signHints(guest.pem, "s-1", "guest", hints);
    expect(hintsProblem({ ...f, key: "AAAA" }, "guest", guest.spki)).toContain("not a public key");
    expect(hintsProblem({ ...f, sig: "AAAA" }, "guest", guest.spki)).toContain("does not verify");
  });
});
