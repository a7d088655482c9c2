// Unit tests for src/host/known-guests.ts and the prompt's lines about who a guest is: new, known,
// a known name with another key, a known key under another name; a damaged file is refused, and an
// ask whose identity signature does not hold is found out by the host itself.
import { expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { askIdentity, KnownGuests } from "../../src/host/known-guests.ts";
import { recognitionLines } from "../../src/cli/guest-recognition.ts";
import { exportPrivateKeyPem, generateKeyPair } from "../../src/pki/index.ts";
import { identityFingerprint, signIdentity, viaCode, viaShare } from "../../src/pki/identity.ts";
import type { FrameOf, ServerFrame } from "../../src/wire/protocol.ts";

const A = `SHA256:${"A".repeat(43)}`;
const B = `SHA256:${"B".repeat(43)}`;
const DAY = 86_400_000;

test("new, then known with its visits; a known name with another key and a known key under another name are warned about", () => {
  const k = KnownGuests.memory();
  expect(k.recognise(A, "alice")).toEqual({ kind: "new" });
  expect(recognitionLines(A, k.recognise(A, "alice"), "alice")).toContain("known   new guest");
  k.visit(A, "alice", 0);
  k.visit(A, "alice", 1000);
  const r = k.recognise(A, "alice");
  expect(r).toMatchObject({ kind: "known", guest: { visits: 2, last: 1000 } });
  expect(recognitionLines(A, r, "alice", 1000 + 2 * DAY)).toContain("known as alice (3rd visit, last 2 days ago)");
  const impostor = k.recognise(B, "alice");
  expect(impostor).toMatchObject({ kind: "impostor", others: [{ id: A }] });
  expect(recognitionLines(B, impostor, "alice")).toContain(
    `!!! WARNING: alice is known here with ANOTHER identity key (${A})`,
  );
  const renamed = k.recognise(A, "bob");
  expect(renamed.kind).toBe("renamed");
  expect(recognitionLines(A, renamed, "bob")).toContain(
    "!!! WARNING: this identity is known here as alice (2 visit(s)), but now calls itself bob",
  );
  expect(recognitionLines(undefined, undefined, "old")).toContain("sent no identity key");
});

test("known_guests persists 0600, and a damaged or hand-edited file is refused, never silently emptied", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "known-"));
  const file = path.join(dir, "known_guests.json");
  KnownGuests.load(file).visit(A, "alice", 5);
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  expect(KnownGuests.load(file).recognise(A, "alice")).toMatchObject({ kind: "known", guest: { visits: 1, last: 5 } });
  fs.writeFileSync(file, "{ not json");
  expect(() => KnownGuests.load(file)).toThrow(/is not valid JSON; fix it, or move it away/);
  fs.writeFileSync(file, JSON.stringify({ v: 1, guests: [{ id: "SHA256:short", names: ["x"], visits: 1, last: 0 }] }));
  expect(() => KnownGuests.load(file)).toThrow(/known_guests\.json.*move it away/s);
  fs.rmSync(dir, { recursive: true });
});

test("the host checks an ask's identity itself: a tampered signature or a moved request is a problem, a good one a fingerprint", async () => {
  const key = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  const tls = `SHA256:${"T".repeat(43)}`;
  const ask: FrameOf<ServerFrame, "ask"> = {
    t: "ask",
    requestId: "r-1",
    shareId: "db",
    guest: { name: "alice", addr: "1.2.3.4:5", spki: tls },
    target: "127.0.0.1:5432",
    reason: "debug",
    deadline: 1,
    pake: { nameplate: "K7QF", sid: "A".repeat(22), msg: "A".repeat(43) },
    identity: signIdentity(key, { tlsSpki: tls, name: "alice", reason: "debug", via: viaCode("K7QF") }),
  };
  expect(askIdentity(ask)).toEqual({ id: identityFingerprint(ask.identity!.pub) });
  expect(askIdentity({ ...ask, guest: { ...ask.guest, name: "bob" } }).problem).toContain("does not verify");
  expect(askIdentity({ ...ask, reason: "other" }).problem).toContain("does not verify");
  const sig = Buffer.from(ask.identity!.sig, "base64");
  sig[10]! ^= 0xff;
  expect(askIdentity({ ...ask, identity: { ...ask.identity!, sig: sig.toString("base64") } }).problem).toContain(
    "does not verify",
  );
  // By share id: the share and target are what it signed.
  const byId = {
    ...ask,
    pake: undefined,
    identity: signIdentity(key, {
      tlsSpki: tls,
      name: "alice",
      reason: "debug",
      via: viaShare("db", "127.0.0.1:5432"),
    }),
  };
  expect(askIdentity(byId).id).toBeDefined();
  expect(askIdentity({ ...byId, target: "127.0.0.1:22" }).problem).toBeDefined();
  expect(askIdentity({ ...ask, identity: undefined })).toEqual({});
});
