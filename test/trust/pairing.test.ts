// Issue 30, pairing an approver through the real coordinator: the delegation reaches the device over the
// end-to-end stream, signed by the host key the code confirmed and naming the device's key; a wrong code is
// burnt and reported on both sides, and no delegation is made.
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pairAsApprover } from "../../src/guest/approver-pairing.ts";
import { ApproverBook } from "../../src/host/approver-book.ts";
import { pairApprover } from "../../src/host/approver-pairing.ts";
import { approverKey, delegationSigner } from "../../src/pki/delegation.ts";
import { exportPrivateKeyPem, generateKeyPair, spkiFingerprint } from "../../src/pki/index.ts";
import { identityPublic } from "../../src/pki/identity.ts";
import { signIdentity, viaCode } from "../../src/pki/identity.ts";
import { Live, within } from "../coordinator/live.ts";
import { lying } from "./lying.ts";

setDefaultTimeout(30_000);
let live: Live | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await live?.close();
  live = undefined;
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function setup(lie?: (l: Live) => void) {
  live = await Live.start();
  lie?.(live);
  const id = await live.enrolledHost("build-01");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-pairing-"));
  dirs.push(dir);
  const book = new ApproverBook(path.join(dir, "approvers.json"));
  const approverKeyPem = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  let code!: (c: string) => void;
  const minted = new Promise<string>((r) => (code = r));
  const notices: string[] = [];
  const host = pairApprover(
    {
      address: live.address,
      caPem: live.ca.certPem,
      keyPem: id.keyPem,
      certPem: id.certPem,
      version: "test",
      name: "laptop",
      shares: ["db"],
      lifetimeMs: 90 * 24 * 3600_000,
      hostName: "build-01",
      book,
    },
    { code: (c) => code(c), notice: (l) => notices.push(l) },
  );
  const device = (c: string) =>
    pairAsApprover({
      address: live!.address,
      caPem: live!.ca.certPem,
      version: "test",
      code: c,
      approverKeyPem,
      name: "laptop",
    });
  return { id, book, approverKeyPem, minted, host, device, notices };
}

test("a paired device gets the host's delegation for its own key, the host keeps the same one", async () => {
  const s = await setup();
  const code = await within(s.minted, "the pairing code");
  const got = await within(s.device(code), "the device's delegation");
  const kept = await within(s.host, "the host's pairing");
  expect(got.delegation).toEqual(kept);
  expect(got.hostKey).toBe(s.id.spki);
  expect(delegationSigner(kept)).toBe(s.id.spki);
  expect(approverKey(kept)).toBe(spkiFingerprint(identityPublic(s.approverKeyPem)));
  expect(kept.body.shares).toEqual(["db"]);
  expect(s.book.list()).toEqual([kept]);
});

test("a wrong pairing code is burnt and seen on both sides; no delegation is made", async () => {
  const s = await setup();
  const code = await within(s.minted, "the pairing code");
  const wrong = `${code.slice(0, 5)}${code.slice(5) === "0000" ? "0001" : "0000"}`;
  const hostDone = s.host.then(
    () => "paired",
    (e: Error) => e.message,
  );
  const deviceErr = await within(
    s.device(wrong).then(
      () => "paired",
      (e: Error) => e.message,
    ),
    "the device's refusal",
  );
  expect(deviceErr).toMatch(/code/i);
  expect(await within(hostDone, "the host's refusal")).toMatch(/burnt/);
  expect(s.notices.join("\n")).toMatch(/wrong code: laptop tried .* the code is burnt/);
  expect(s.book.list()).toEqual([]);
});

test("a coordinator that slips its own key into the pairing (a fresh identity proof of its own) gets the code burnt, not a delegation", async () => {
  const evil = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  const s = await setup((l) =>
    lying(l, (f) =>
      f.t === "ask" && f.identity && f.pake
        ? {
            ...f,
            identity: signIdentity(evil, {
              tlsSpki: f.guest.spki,
              name: f.guest.name,
              reason: f.reason,
              via: viaCode(f.pake.nameplate),
            }),
          }
        : f,
    ),
  );
  const hostDone = s.host.then(
    () => "paired",
    (e: Error) => e.message,
  );
  const code = await within(s.minted, "the pairing code");
  const device = await within(
    s.device(code).then(
      () => "paired",
      (e: Error) => e.message,
    ),
    "the device's refusal",
  );
  expect(device).not.toBe("paired");
  expect(await within(hostDone, "the host's refusal")).toMatch(/wrong code: .* the code is burnt/);
  expect(s.book.list()).toEqual([]);
});
