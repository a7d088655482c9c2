// `audit verify`: every kind of tampering is found, on the right line; rotation and checkpoints keep the chain.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AuditLog } from "../src/audit/log.ts";
import { verifyAudit } from "../src/audit/verify.ts";
import { createCA } from "../src/pki/index.ts";
import { coordinatorIdentity } from "./audit-signer.ts";
import { run } from "./e2e/harness.ts";

let dir: string;
let file: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-verify-"));
  file = path.join(dir, "audit.jsonl");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function writeLog(n: number, o: Parameters<typeof AuditLog.open>[1] = {}): void {
  const log = AuditLog.open(file, o);
  for (let i = 1; i <= n; i++)
    log.append("stream.close", { sessionId: `s-${i}`, guest: "ann", bytesUp: i * 100, bytesDown: i });
  log.close();
}

const lines = () => fs.readFileSync(file, "utf8").split(/(?<=\n)/);
const save = (ls: string[]) => fs.writeFileSync(file, ls.join(""));

describe("audit verify", () => {
  test("an untouched log verifies with a summary", () => {
    writeLog(10);
    const r = verifyAudit([file]);
    expect(r.ok).toBe(true);
    expect(r.events).toBe(10);
    expect(r.firstSeq).toBe(1);
    expect(r.lastSeq).toBe(10);
  });

  test("editing one byte in a value names that line as edited", () => {
    writeLog(10);
    const ls = lines();
    ls[4] = ls[4]!.replace('"guest":"ann"', '"guest":"anx"');
    save(ls);
    const r = verifyAudit([file]);
    expect(r.bad).toMatchObject({ line: 5, kind: "edited" });
  });

  test("deleting a line names the gap", () => {
    writeLog(10);
    const ls = lines();
    ls.splice(6, 1); // seq 7
    save(ls);
    const r = verifyAudit([file]);
    expect(r.bad).toMatchObject({ line: 7, kind: "removed" });
    expect(r.bad!.message).toContain("seq 7 was removed");
  });

  test("swapping two lines is reported as reordering", () => {
    writeLog(10);
    const ls = lines();
    [ls[2], ls[3]] = [ls[3]!, ls[2]!];
    save(ls);
    const r = verifyAudit([file]);
    expect(r.bad).toMatchObject({ line: 3, kind: "reordered" });
  });

  test("a line cut mid-write is reported as torn", () => {
    writeLog(10);
    const text = fs.readFileSync(file, "utf8");
    fs.writeFileSync(file, text.slice(0, text.length - 20));
    const r = verifyAudit([file]);
    expect(r.bad).toMatchObject({ line: 10, kind: "torn" });
  });

  test("removing the first lines is detected", () => {
    writeLog(5);
    save(lines().slice(2));
    expect(verifyAudit([file]).bad).toMatchObject({ line: 1, kind: "removed" });
  });

  test("the CLI exits 0 on a good log and 1 naming the line on a bad one", async () => {
    writeLog(6);
    const good = await run(["audit", "verify", file]);
    expect(good.code).toBe(0);
    expect(good.out).toContain("ok: 6 events (seq 1-6");
    const ls = lines();
    ls[1] = ls[1]!.replace('"bytesUp":200', '"bytesUp":999');
    save(ls);
    const bad = await run(["audit", "verify", file]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("line 2 was edited");
  });

  test("rotation keeps the chain across files, and a missing middle file is found", () => {
    writeLog(30, { rotateBytes: 1000 });
    const rotated = fs
      .readdirSync(dir)
      .filter((f) => f.startsWith("audit.jsonl."))
      .sort();
    expect(rotated.length).toBeGreaterThan(2);
    const first = JSON.parse(lines()[0]!);
    expect(first.event).toBe("rotate");
    const r = verifyAudit([file]);
    expect(r.ok).toBe(true);
    expect(r.files.length).toBe(rotated.length + 1);
    expect(r.lastSeq).toBe(30 + rotated.length);
    // Remove a middle file: the chain now continues from a file that is not there.
    fs.rmSync(path.join(dir, rotated[1]!));
    const broken = verifyAudit([file]);
    expect(broken.ok).toBe(true);
    expect(broken.continuesFrom).toBe(rotated[1]);
    // Editing the last line of a rotated file breaks the link into the next file.
    const older = path.join(dir, rotated[rotated.length - 1]!);
    const t = fs.readFileSync(older, "utf8").replace(/"guest":"ann"(?=[^\n]*\n$)/, '"guest":"eve"');
    fs.writeFileSync(older, t);
    expect(verifyAudit([file]).bad).toMatchObject({ kind: "edited" });
  });

  test("signed checkpoints verify with the coordinator's certificate and fail with another", async () => {
    const { keyPem, certPem: cert } = await coordinatorIdentity();
    writeLog(25, { checkpointEvery: 10, signingKeyPem: keyPem });
    const r = verifyAudit([file], { certPem: cert });
    expect(r.ok).toBe(true);
    expect(r.checkpoints).toBe(2);
    const other = await createCA({ commonName: "other", now: new Date() });
    expect(verifyAudit([file], { certPem: other.certPem }).bad).toMatchObject({ kind: "bad-signature", line: 11 });
  });
});
