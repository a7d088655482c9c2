// Issue 30 at the real binary: `tessera approvers list|remove` on the host's book, and `tessera receipt
// verify|show` on a receipt a delegated approver signed (the chain checked, who approved printed).
import { afterAll, expect, test } from "bun:test";
import { createPublicKey } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ApproverBook } from "../../src/host/approver-book.ts";
import { signDelegation } from "../../src/pki/delegation.ts";
import { exportPrivateKeyPem, generateKeyPair } from "../../src/pki/index.ts";
import { receiptSigner, signReceipt } from "../../src/wire/receipt.ts";
import { killAll, run } from "./harness.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-approvers-e2e-"));
afterAll(async () => {
  await killAll();
  fs.rmSync(dir, { recursive: true, force: true });
});
const pub = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "der" }).toString("base64");
const [host, laptop, other] = await Promise.all(
  [0, 1, 2].map(async () => exportPrivateKeyPem((await generateKeyPair()).privateKey)),
);
const delegate = (key: string, name = "laptop") =>
  signDelegation(key, {
    name,
    hostName: "build-01",
    approverPub: pub(laptop),
    shares: ["db"],
    issuedAt: Date.now() - 1000,
    expiresAt: Date.UTC(2027, 2, 1),
  });
const env = { TESSERA_HOME: path.join(dir, "host") };

test("approvers list shows the book; remove takes one back (recorded with its key, the file stays 0600)", async () => {
  const book = new ApproverBook(path.join(env.TESSERA_HOME, "approvers.json"));
  const d = delegate(host);
  book.add(d);
  book.add(delegate(host, "phone"));
  const list = await run(["approvers", "list"], env);
  expect(list.code, list.err).toBe(0);
  expect(list.out).toMatch(/^laptop +db +until 2027-03-01 +SHA256:\S{43}$/m);
  expect(list.out).toMatch(/^phone +db /m);
  const gone = await run(["approvers", "remove", "laptop"], env);
  expect(gone.code, gone.err).toBe(0);
  expect(gone.err + gone.out).toContain(`removed approver laptop`);
  expect(book.revoked(d)).toMatch(/^was removed by the host at /);
  const after = await run(["approvers", "list"], env);
  expect(after.out).not.toMatch(/^laptop +db/m);
  expect(after.out).toMatch(/^laptop +removed \S+ +SHA256:/m);
  expect(fs.statSync(path.join(env.TESSERA_HOME, "approvers.json")).mode & 0o777).toBe(0o600);
  const missing = await run(["approvers", "remove", "nobody"], env);
  expect(missing.code).toBe(1);
  expect(missing.err).toContain("no approver named nobody");
});

test("receipt verify checks a delegated receipt through its chain and says who approved; another host's delegation fails", async () => {
  const fields = {
    requestId: "r-1",
    shareId: "db",
    guestKey: `SHA256:${"G".repeat(43)}`,
    target: "127.0.0.1:5432",
    decision: "allow" as const,
    at: Date.now(),
  };
  const hostKey = receiptSigner(signReceipt(host, fields));
  const file = path.join(dir, "delegated.json");
  fs.writeFileSync(file, JSON.stringify(signReceipt(laptop, fields, delegate(host))));
  const ok = await run(["receipt", "verify", file, "--host-key", hostKey]);
  expect(ok.code, ok.err).toBe(0);
  expect(ok.out).toContain(
    `ok: allow signed by ${hostKey} (the host key you named); approved by laptop, delegated by host build-01 until 2027-03-01`,
  );
  expect((await run(["receipt", "show", file])).out).toContain("approved by laptop, delegated by host build-01");
  const forged = path.join(dir, "forged.json");
  fs.writeFileSync(forged, JSON.stringify(signReceipt(laptop, fields, delegate(other))));
  const bad = await run(["receipt", "verify", forged, "--host-key", hostKey]);
  expect(bad.code).toBe(1);
  expect(bad.err).toMatch(
    /the receipt does not verify: approver laptop's delegation is signed by SHA256:\S+, not by this host's key/,
  );
});

test("pairing at the real binary: `approvers add` prints a code, `approve --pair` from a fresh home gets the delegation; a wrong code is burnt on both sides", async () => {
  const { deploy } = await import("./harness.ts");
  const { spawn } = await import("./harness.ts");
  const d = await deploy();
  const device = { TESSERA_HOME: path.join(d.dir, "laptop") };
  const host = spawn(["approvers", "add", "laptop", "--shares", "db,web", "--expires", "30d"], d.hostEnv, {
    cwd: d.dir,
  });
  const line = (await host.waitFor(/tessera approve --pair (\S+\/[0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
  const paired = await run(["approve", "--pair", line, "--name", "ana-laptop"], device);
  expect(paired.code, paired.err).toBe(0);
  expect(paired.err + paired.out).toMatch(
    /paired: this device is approver laptop, delegated by host hosty until \d{4}-\d\d-\d\d for db,web/,
  );
  expect(await host.exit()).toBe(0);
  expect(host.err + host.out).toMatch(/paired approver laptop \(key SHA256:\S+\) for db,web until/);
  expect(fs.statSync(path.join(device.TESSERA_HOME, "approver.key")).mode & 0o777).toBe(0o600);
  const mine = JSON.parse(fs.readFileSync(path.join(device.TESSERA_HOME, "approver.json"), "utf8"));
  const kept = JSON.parse(fs.readFileSync(path.join(d.hostEnv.TESSERA_HOME, "approvers.json"), "utf8"));
  expect(mine.hosts[0].delegation).toEqual(kept.approvers[0]);
  expect((await run(["approvers", "list"], d.hostEnv)).out).toMatch(/^laptop +db,web +until /m);

  // A wrong code: the device is refused, the host reads that the code is burnt, and nothing is added.
  const again = spawn(["approvers", "add", "phone"], d.hostEnv, { cwd: d.dir });
  const good = (await again.waitFor(/tessera approve --pair (\S+\/[0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
  const wrong = `${good.slice(0, -4)}${good.endsWith("0000") ? "0001" : "0000"}`;
  const refused = await run(["approve", "--pair", wrong], { TESSERA_HOME: path.join(d.dir, "phone") });
  expect(refused.code).toBe(1);
  expect(refused.err).toMatch(/code/i);
  expect(await again.exit()).not.toBe(0);
  expect(again.err).toMatch(
    /wrong code: .* the code is burnt and nobody was connected; run `tessera approvers add` again/,
  );
  expect((await run(["approvers", "list"], d.hostEnv)).out).not.toMatch(/^phone/m);
});
