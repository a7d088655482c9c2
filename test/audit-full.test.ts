// src/audit/log.ts on a disk that fills up (a real tmpfs, root needed): a refused write leaves no torn
// line, work that needs a line is refused with a clear error, endings wait and are written once there is
// room, and the chain (signed) verifies over the whole outage.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { AuditLog } from "../src/audit/log.ts";
import { verifyAudit } from "../src/audit/verify.ts";
import { RefusedError } from "../src/errors.ts";
import { mountTmpfs, unmountAll, type Tmpfs } from "./faults/tmpfs.ts";
import { firstTornLine } from "./faults/audit-check.ts";
import { coordinatorIdentity } from "./audit-signer.ts";

let disk: Tmpfs | string;
beforeAll(async () => {
  disk = await mountTmpfs("128k");
});
afterAll(() => unmountAll());

describe("audit log on a full disk", () => {
  test("refuses new work, defers endings, tells once, and resumes with the chain whole", async () => {
    if (typeof disk === "string") return console.warn(`skipped: ${disk}`);
    const id = await coordinatorIdentity();
    const file = path.join(disk.dir, "audit.jsonl");
    const told: string[] = [];
    const log = AuditLog.open(file, {
      signingKeyPem: id.keyPem,
      checkpointEvery: 5,
      checkpointIntervalMs: 60_000,
      onFull: (m) => told.push(`full: ${m}`),
      onRoom: (m) => told.push(`room: ${m}`),
    });
    log.append("session.open", { sessionId: "s1" });
    await log.appendDurable("stream.open", { sessionId: "s1", streamId: "t1" });
    disk.fill();
    // A big line cannot fit: the write is refused part way and cut back to the last whole line.
    let err: unknown;
    try {
      log.append("stream.open", { sessionId: "s1", streamId: "t2", pad: "x".repeat(64 * 1024) });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RefusedError);
    expect((err as RefusedError).code).toBe("audit_full");
    expect((err as Error).message).toContain("the coordinator's audit disk is full");
    expect(firstTornLine(file)).toBe(0);
    expect(log.trouble).toContain("disk is full");
    expect(told).toHaveLength(1);
    // New work: refused at once; an ending: accepted now, written later.
    expect(() => log.append("request", { requestId: "r1" })).toThrow(/audit disk is full/);
    await log.appendSoon("stream.close", { sessionId: "s1", streamId: "t1", bytesUp: 3, bytesDown: 4 });
    log.append("session.close", { sessionId: "s1", streams: 1 });
    expect(fs.readFileSync(file, "utf8")).not.toContain("stream.close");
    expect(told).toHaveLength(1);
    disk.free();
    // The room timer tries every second: wait for the event it reports.
    const deadline = Date.now() + 10_000;
    while (!told.some((t) => t.startsWith("room:")) && Date.now() < deadline) await Bun.sleep(50);
    expect(told[1]).toMatch(/^room: the coordinator's audit disk has room again/);
    expect(log.trouble).toBeUndefined();
    log.append("request", { requestId: "r2" });
    log.checkpoint();
    log.close();
    const lines = fs
      .readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const events = lines.map((l) => l.event).filter((e) => e !== "checkpoint");
    expect(events).toEqual(["session.open", "stream.open", "stream.close", "session.close", "audit.resume", "request"]);
    const resume = lines.find((l) => l.event === "audit.resume");
    expect(resume.refused).toBe(2);
    expect(resume.deferred).toBe(2);
    expect(lines.find((l) => l.event === "stream.close").happenedAt).toMatch(/^\d{4}-/);
    const r = verifyAudit([file], { certPem: id.certPem });
    expect(r.bad).toBeUndefined();
    expect(r.ok).toBe(true);
  }, 30_000);

  test("a rotation the disk refuses leaves the new file empty and starts it with its rotate line later", async () => {
    if (typeof disk === "string") return console.warn(`skipped: ${disk}`);
    const id = await coordinatorIdentity();
    const file = path.join(disk.dir, "rot.jsonl");
    const told: string[] = [];
    const log = AuditLog.open(file, {
      rotateBytes: 2048,
      signingKeyPem: id.keyPem,
      checkpointEvery: 100,
      checkpointIntervalMs: 60_000,
      onRoom: (m) => told.push(m),
    });
    while (fs.statSync(file).size < 2048) log.append("request", { requestId: "r".repeat(40) });
    disk.fill();
    // This write rotates first: the old file is renamed, and the new one's first line does not fit.
    expect(() => log.append("request", { requestId: "x" })).toThrow(/audit disk is full/);
    const rotated = fs.readdirSync(disk.dir).filter((f) => /^rot\.jsonl\.\d+$/.test(f));
    expect(rotated).toHaveLength(1);
    expect(fs.readFileSync(file, "utf8")).toBe("");
    disk.free();
    const deadline = Date.now() + 10_000;
    while (!told.length && Date.now() < deadline) await Bun.sleep(50);
    expect(told).toHaveLength(1);
    log.append("request", { requestId: "after" });
    log.checkpoint();
    log.close();
    expect(JSON.parse(fs.readFileSync(file, "utf8").split("\n")[0]!).event).toBe("rotate");
    const r = verifyAudit([file], { certPem: id.certPem });
    expect(r.bad).toBeUndefined();
    expect(r.files).toHaveLength(2);
    fs.rmSync(path.join(disk.dir, rotated[0]!));
    fs.rmSync(file);
  }, 30_000);
});
