// Issue 15 part 1 at the coordinator: a guest's identity is checked (a bad signature is refused with a clear
// error and the code is given back), relayed to the host in the ask, and named on the audit request line.
import { afterEach, expect, test } from "bun:test";
import { FAKE_PAKE, refusal, World } from "./fake-peers.ts";
import { exportPrivateKeyPem, generateKeyPair, readCsr } from "../../src/pki/index.ts";
import { identityFingerprint, signIdentity, viaCode } from "../../src/pki/identity.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

test("a signed identity reaches the host and the audit line; a tampered one is refused and the code is kept", async () => {
  w = await World.open();
  const agent = await w.agent();
  const key = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  const code = await w.mint(agent);
  const g = await w.guest();
  const tlsSpki = (await readCsr(g.csr)).spki;
  const good = signIdentity(key, { tlsSpki, name: "alice", reason: "testing", via: viaCode(code) });
  const sig = Buffer.from(good.sig, "base64");
  sig[12]! ^= 0xff;
  const bad = await refusal(
    w.send(g.peer, {
      t: "redeem",
      code,
      csr: g.csr,
      name: "alice",
      reason: "testing",
      pake: FAKE_PAKE,
      identity: { ...good, sig: sig.toString("base64") },
    }),
  );
  expect(bad.code).toBe("bad_identity");
  expect(bad.message).toContain("its identity signature does not verify for this request");
  expect(agent.ch.of("ask")).toEqual([]);
  expect(await w.codeUsed(code)).toBe(false);

  const g2 = await w.guest();
  const good2 = signIdentity(key, {
    tlsSpki: (await readCsr(g2.csr)).spki,
    name: "alice",
    reason: "testing",
    via: viaCode(code),
  });
  await w.send(g2.peer, {
    t: "redeem",
    code,
    csr: g2.csr,
    name: "alice",
    reason: "testing",
    pake: FAKE_PAKE,
    identity: good2,
  });
  expect((await agent.ch.wait("ask")).identity).toEqual(good2);
  expect(w.one("request")).toMatchObject({ guest: "alice", guestId: identityFingerprint(good.pub) });
});
