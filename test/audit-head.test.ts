// The signed audit head (what /audit/head serves), checkpoints written before they were chained, and a
// log written before checkpoints were signed at the start, reopened by a coordinator that signs it.
import { afterEach, beforeAll, beforeEach, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash, sign } from "node:crypto";
import { AuditLog } from "../src/audit/log.ts";
import { verifyAudit } from "../src/audit/verify.ts";
import { publicKeyOf, signCheckpoint, verifyHead } from "../src/audit/checkpoint.ts";
import { headUrl } from "../src/audit/head.ts";
import { coordinatorIdentity } from "./audit-signer.ts";

let dir: string;
let file: string;
let keyPem: string;
let certPem: string;
let otherCertPem: string;

beforeAll(async () => {
  let caCertPem: string;
  ({ keyPem, certPem, caCertPem } = await coordinatorIdentity());
  otherCertPem = caCertPem;
});
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-head-"));
  file = path.join(dir, "audit.jsonl");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const lines = () =>
  fs
    .readFileSync(file, "utf8")
    .split(/(?<=\n)/)
    .filter(Boolean);

test("the head states the last line on disk, signed with the coordinator key; another key does not verify it", () => {
  const log = AuditLog.open(file, { signingKeyPem: keyPem, checkpointIntervalMs: 60_000 });
  log.append("one");
  log.append("two");
  const head = log.signedHead()!;
  log.close();
  const last = lines().at(-1)!;
  expect(head.seq).toBe(3);
  expect(head.hash).toBe(sha256(last));
  expect(head.ts).toBe(JSON.parse(last).ts);
  expect(verifyHead(publicKeyOf(certPem), head)).toBe(true);
  expect(verifyHead(publicKeyOf(otherCertPem), head)).toBe(false);
  expect(verifyHead(publicKeyOf(certPem), { ...head, seq: 2 })).toBe(false);
  const keyless = AuditLog.open(path.join(dir, "keyless.jsonl"));
  expect(keyless.signedHead()).toBeUndefined();
  keyless.close();
});

test("a head signed long ago is reported as a possible replay", () => {
  let now = Date.parse("2030-01-01T00:00:00.000Z");
  const log = AuditLog.open(file, { signingKeyPem: keyPem, checkpointIntervalMs: 60_000, now: () => now });
  log.append("one");
  log.checkpoint();
  const head = log.signedHead()!;
  log.close();
  expect(verifyAudit([file], { certPem, head, now: now + 60_000 }).warnings).toEqual([]);
  now += 3_600_000;
  const r = verifyAudit([file], { certPem, head, now });
  expect(r.ok).toBe(true);
  expect(r.warnings).toEqual([
    expect.stringContaining(
      "signed at 2030-01-01T00:00:00.000Z, 1h ago: the clocks disagree, or an old head was replayed",
    ),
  ]);
});

test("--against takes the coordinator's HTTP address or the head's URL", () => {
  expect(headUrl("http://127.0.0.1:8080").toString()).toBe("http://127.0.0.1:8080/audit/head");
  expect(headUrl("127.0.0.1:8080").toString()).toBe("http://127.0.0.1:8080/audit/head");
  expect(headUrl("https://c.example/audit/head").toString()).toBe("https://c.example/audit/head");
  expect(() => headUrl("ftp://c.example")).toThrow("http:// or https://");
  expect(() => headUrl("http://")).toThrow("--against must be");
});

test("checkpoints from before they were chained still verify, and a log without a signed start is signed when reopened", () => {
  // A log written as coordinators did before: no signed start, a checkpoint signing only (seq, prev).
  const old = AuditLog.open(file);
  old.append("one");
  old.append("two");
  old.close();
  const prev = sha256(lines().at(-1)!);
  const sig = sign("sha256", Buffer.from(`tessera-audit-checkpoint\n3\n${prev}`), keyPem).toString("base64");
  fs.appendFileSync(
    file,
    `${JSON.stringify({ seq: 3, ts: new Date().toISOString(), event: "checkpoint", sig, prev })}\n`,
  );
  fs.appendFileSync(
    file,
    `${JSON.stringify({ seq: 4, ts: new Date().toISOString(), event: "three", prev: sha256(lines().at(-1)!) })}\n`,
  );
  expect(verifyAudit([file], { certPem })).toMatchObject({
    ok: true,
    checkpoints: 1,
    unsigned: { events: 1, firstSeq: 4 },
  });
  expect(verifyAudit([file], { certPem: otherCertPem }).bad).toMatchObject({ kind: "bad-signature", line: 3 });

  // Reopened with the interval: an "open" checkpoint chained to the old one signs everything so far.
  const now = AuditLog.open(file, { signingKeyPem: keyPem, checkpointIntervalMs: 60_000 });
  now.append("four");
  now.checkpoint();
  now.close();
  const opened = JSON.parse(lines()[4]!);
  expect(opened).toMatchObject({ seq: 5, event: "checkpoint", reason: "open", prevCheckpoint: sha256(lines()[2]!) });
  expect(verifyAudit([file], { certPem })).toMatchObject({ ok: true, cleanStop: true, warnings: [] });
});

test("a validly signed checkpoint that does not follow the previous one breaks the chain of checkpoints", () => {
  const log = AuditLog.open(file, { signingKeyPem: keyPem, checkpointIntervalMs: 60_000 });
  log.append("one");
  log.close();
  // As a second writer of the same coordinator key would append, not knowing the first's checkpoints.
  const prev = sha256(lines().at(-1)!);
  const body = {
    seq: 3,
    ts: new Date().toISOString(),
    prev,
    prevCheckpoint: "0".repeat(64),
    reason: "open" as const,
    every: 0,
    intervalMs: 60_000,
  };
  const { seq, ts, reason, every, intervalMs, prevCheckpoint } = body;
  fs.appendFileSync(
    file,
    `${JSON.stringify({
      seq,
      ts,
      event: "checkpoint",
      reason,
      every,
      intervalMs,
      prevCheckpoint,
      sig: signCheckpoint(keyPem, body),
      prev,
    })}\n`,
  );
  const r = verifyAudit([file], { certPem });
  expect(r.bad).toMatchObject({ kind: "removed", line: 3 });
  expect(r.bad!.message).toContain("different previous checkpoint than the checkpoint at seq 1");
});
