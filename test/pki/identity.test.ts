// Unit tests for src/pki/identity.ts and its place in the code's PAKE: a guest's identity signature holds
// only for the very request it signed, and the code confirms the identity's fingerprint.
import { expect, test } from "bun:test";
import { exportPrivateKeyPem, generateKeyPair, spkiFingerprint } from "../../src/pki/index.ts";
import {
  identityFingerprint,
  identityProblem,
  identityPublic,
  signIdentity,
  viaCode,
  viaShare,
} from "../../src/pki/identity.ts";
import { guestStart, hostRespond, tagsEqual } from "../../src/pki/code-pake.ts";

const TLS = `SHA256:${"T".repeat(43)}`;
const claims = { tlsSpki: TLS, name: "alice", reason: "debug", via: viaCode("K7QF") };
const newKey = async () => exportPrivateKeyPem((await generateKeyPair()).privateKey);

test("an identity signature holds for its own request, and for nothing else", async () => {
  const key = await newKey();
  const p = signIdentity(key, claims);
  expect(identityProblem(p, claims)).toBeUndefined();
  expect(identityFingerprint(p.pub)).toBe(spkiFingerprint(identityPublic(key)));
  // Each field it signs is bound: another TLS key, name, reason or code is another request.
  for (const other of [
    { tlsSpki: `SHA256:${"U".repeat(43)}` },
    { name: "mallory" },
    { reason: "debug!" },
    { via: viaCode("K7QG") },
    { via: viaShare("db", "127.0.0.1:5432") },
  ]) {
    expect(identityProblem(p, { ...claims, ...other })).toBe("its identity signature does not verify for this request");
  }
  // A tampered signature, or one key's signature shown with another key, is refused.
  const sig = Buffer.from(p.sig, "base64");
  sig[sig.length - 1]! ^= 1;
  expect(identityProblem({ ...p, sig: sig.toString("base64") }, claims)).toBe(
    "its identity signature does not verify for this request",
  );
  expect(identityProblem({ ...p, pub: identityPublic(await newKey()) }, claims)).toBe(
    "its identity signature does not verify for this request",
  );
  expect(identityProblem({ ...p, sig: "not base64 at all" }, claims)).toBe(
    "its identity signature does not verify for this request",
  );
  // Not a P-256 key at all.
  expect(identityProblem({ ...p, pub: Buffer.from("junk").toString("base64") }, claims)).toBe(
    "its identity key is not an ECDSA P-256 public key",
  );
  expect(identityFingerprint("AAAA")).toBeUndefined();
});

test("length-prefixed fields: moving text between name and reason changes the signed bytes", async () => {
  const key = await newKey();
  const p = signIdentity(key, { ...claims, name: "a", reason: "b\nc" });
  expect(identityProblem(p, { ...claims, name: "a\nb", reason: "c" })).toBeDefined();
});

test("the code's PAKE confirms the identity: a coordinator that swaps it breaks the key confirmation", () => {
  const guest = { spki: TLS, name: "alice", reason: "debug", identity: `SHA256:${"I".repeat(43)}` };
  const host = { spki: `SHA256:${"H".repeat(43)}`, target: "127.0.0.1:5432" };
  const run = () => guestStart("K7QF", "M2XD");
  const g = run();
  const same = hostRespond("K7QF", "M2XD", g.msg.sid, g.msg.msg, guest, host)!;
  expect(tagsEqual(same.keys.hostTag, g.finish(guest, host, same.msg)!.hostTag)).toBe(true);
  const g2 = run();
  const swapped = hostRespond(
    "K7QF",
    "M2XD",
    g2.msg.sid,
    g2.msg.msg,
    { ...guest, identity: `SHA256:${"J".repeat(43)}` },
    host,
  )!;
  expect(tagsEqual(swapped.keys.hostTag, g2.finish(guest, host, swapped.msg)!.hostTag)).toBe(false);
  const g3 = run();
  const dropped = hostRespond("K7QF", "M2XD", g3.msg.sid, g3.msg.msg, { ...guest, identity: undefined }, host)!;
  expect(tagsEqual(dropped.keys.hostTag, g3.finish(guest, host, dropped.msg)!.hostTag)).toBe(false);
});
