// `audit verify --cert`: what an attacker with write access to the log file can cut, edit or fabricate is shown.
import { afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import { AuditLog, type AuditOptions } from "../src/audit/log.ts";
import { verifyAudit } from "../src/audit/verify.ts";
import { coordinatorIdentity } from "./audit-signer.ts";
import { run } from "./e2e/harness.ts";

let dir: string;
let file: string;
let keyPem: string;
let certPem: string;

beforeAll(async () => {
  ({ keyPem, certPem } = await coordinatorIdentity());
});
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-tamper-"));
  file = path.join(dir, "audit.jsonl");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A log as the coordinator writes it: signed start, a checkpoint every `every` events and every minute. */
function openLog(o: Partial<AuditOptions> = {}): AuditLog {
  return AuditLog.open(file, { signingKeyPem: keyPem, checkpointEvery: 1000, checkpointIntervalMs: 60_000, ...o });
}
function events(log: AuditLog, n: number): void {
  for (let i = 1; i <= n; i++)
    log.append("stream.close", { sessionId: `s-${i}`, guest: "ann", bytesUp: i * 100, bytesDown: i });
}
/** A clean stop, as the coordinator's: a last event, a signed checkpoint, close. */
function stop(log: AuditLog): void {
  log.append("coordinator.stop");
  log.checkpoint();
  log.close();
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const lines = () => fs.readFileSync(file, "utf8").split(/(?<=\n)/);
const save = (ls: string[]) => fs.writeFileSync(file, ls.join(""));
const isCheckpoint = (l: string) => (JSON.parse(l) as { event: string }).event === "checkpoint";
/** What an attacker without the key does after removing or editing lines: renumber and rebuild the chain. */
function rechain(ls: string[]): string[] {
  let prev = "0".repeat(64);
  return ls.map((l, i) => {
    const rec = JSON.parse(l) as Record<string, unknown>;
    rec.seq = i + 1;
    rec.prev = prev;
    const out = `${JSON.stringify(rec)}\n`;
    prev = sha256(out);
    return out;
  });
}

describe("attacks today's verify did not see", () => {
  test("an untouched, cleanly stopped log verifies with no warning and reaches the coordinator's head", () => {
    const log = openLog();
    events(log, 120);
    log.append("coordinator.stop");
    log.checkpoint();
    const head = log.signedHead()!;
    log.close();
    expect(JSON.parse(lines()[0]!)).toMatchObject({ seq: 1, event: "checkpoint", reason: "start" });
    const r = verifyAudit([file], { certPem, head });
    expect(r.ok).toBe(true);
    expect(r.warnings).toEqual([]);
    expect(r.cleanStop).toBe(true);
    expect(r.head).toMatchObject({ seq: 123 });
  });

  for (const cut of [1, 50]) {
    test(`the last ${cut} line(s) removed: the unsigned tail is reported, and the signed head says what is missing`, () => {
      const log = openLog();
      events(log, 120);
      log.append("coordinator.stop");
      log.checkpoint();
      const head = log.signedHead()!;
      log.close();
      save(lines().slice(0, -cut));
      const lastSeq = 123 - cut;
      const r = verifyAudit([file], { certPem });
      expect(r.cleanStop).toBe(false);
      expect(r.unsigned).toMatchObject({ events: lastSeq - 1, firstSeq: 2, lastSeq });
      expect(r.warnings.join("\n")).toContain(`the last ${lastSeq - 1} events (seq 2-${lastSeq}, since `);
      expect(r.warnings.join("\n")).toContain("not covered by a signed checkpoint");
      const against = verifyAudit([file], { certPem, head });
      expect(against.bad).toMatchObject({ kind: "cut" });
      expect(against.bad!.message).toContain(`ends at seq ${lastSeq}`);
      expect(against.bad!.message).toContain(
        cut === 1 ? "seq 123 is missing from the end" : `seq ${lastSeq + 1}-123 are missing from the end`,
      );
    });
  }

  test("every line after the last checkpoint removed: the log does not end at a clean stop, and the head catches it", () => {
    const log = openLog({ checkpointEvery: 10 });
    events(log, 25);
    const head = log.signedHead()!;
    log.close(); // a crash: no clean stop
    const ls = lines();
    const lastCheckpoint = ls.findLastIndex(isCheckpoint);
    expect(lastCheckpoint).toBe(22); // seq 23: after the 20th event
    save(ls.slice(0, lastCheckpoint + 1));
    const r = verifyAudit([file], { certPem });
    expect(r.ok).toBe(true);
    expect(r.cleanStop).toBe(false);
    expect(r.unsigned).toBeUndefined();
    expect(r.warnings.join("\n")).toContain("ends at a checkpoint the coordinator wrote while running (seq 23");
    expect(verifyAudit([file], { certPem, head }).bad).toMatchObject({ kind: "cut" });
  });

  test("a line after the last checkpoint edited and the chain rebuilt: reported as unsigned, and the head tells it apart", () => {
    const log = openLog({ checkpointEvery: 10 });
    events(log, 25);
    const head = log.signedHead()!;
    log.close();
    const ls = lines();
    expect(ls.length).toBe(28);
    ls[25] = ls[25]!.replace('"guest":"ann"', '"guest":"eve"'); // seq 26, after the checkpoint at seq 23
    save(rechain(ls));
    const r = verifyAudit([file], { certPem });
    expect(r.unsigned).toMatchObject({ events: 5, firstSeq: 24, lastSeq: 28 });
    expect(r.warnings.join("\n")).toContain("the last 5 events (seq 24-28, since ");
    const against = verifyAudit([file], { certPem, head });
    expect(against.bad).toMatchObject({ kind: "edited", line: 28 });
    expect(against.bad!.message).toContain("differs from the coordinator's signed head");
  });

  test("every checkpoint removed and the chain rebuilt: no signed start is a failure", () => {
    const log = openLog({ checkpointEvery: 10 });
    events(log, 25);
    stop(log);
    save(rechain(lines().filter((l) => !isCheckpoint(l))));
    expect(verifyAudit([file]).ok).toBe(true); // the chain alone is whole...
    const r = verifyAudit([file], { certPem }); // ...but nothing in it is signed
    expect(r.ok).toBe(false);
    expect(r.bad).toMatchObject({ kind: "unsigned" });
    expect(r.bad!.message).toContain("no signed start");
  });

  test("a fabricated 3-line log with no checkpoint fails, in the library and the CLI", async () => {
    save(
      rechain(
        [1, 2, 3].map(
          (i) =>
            `${JSON.stringify({
              seq: i,
              ts: new Date().toISOString(),
              event: "session.open",
              sessionId: `s-${i}`,
              prev: "",
            })}\n`,
        ),
      ),
    );
    expect(verifyAudit([file]).ok).toBe(true);
    expect(verifyAudit([file], { certPem }).bad).toMatchObject({ kind: "unsigned" });
    fs.writeFileSync(path.join(dir, "coordinator.crt"), certPem);
    const cli = await run(["audit", "verify", file, "--cert", path.join(dir, "coordinator.crt")]);
    expect(cli.code).toBe(1);
    expect(cli.err).toContain("no signed start");
  });
});

describe("checkpoints on a time interval, chained", () => {
  test("an event more than the interval after an unsigned one gets a checkpoint first; removing it is a failure", () => {
    let now = Date.parse("2030-01-01T00:00:00.000Z");
    const log = openLog({ now: () => now });
    log.append("a");
    now += 30_000;
    log.append("b");
    now += 40_000; // 70 s after "a": a checkpoint is due before "c"
    log.append("c");
    now += 1_000;
    stop(log);
    const ls = lines();
    expect(ls.map((l) => JSON.parse(l).event)).toEqual([
      "checkpoint",
      "a",
      "b",
      "checkpoint",
      "c",
      "coordinator.stop",
      "checkpoint",
    ]);
    expect(JSON.parse(ls[3]!)).toMatchObject({
      reason: "interval",
      intervalMs: 60_000,
      ts: "2030-01-01T00:01:10.000Z",
    });
    const r = verifyAudit([file], { certPem });
    expect(r.ok).toBe(true);
    expect(r.policy).toEqual({ every: 1000, intervalMs: 60_000 });
    // Without the interval checkpoint (and the stop that would no longer verify), the tail is too long.
    save(rechain([ls[0]!, ls[1]!, ls[2]!, ls[4]!, ls[5]!]));
    const cut = verifyAudit([file], { certPem });
    expect(cut.bad).toMatchObject({ kind: "missing-checkpoint", line: 4 });
    expect(cut.bad!.message).toContain("1m10s after seq 2");
  });

  test("more events than the count allows without a checkpoint is a failure", () => {
    const log = openLog({ checkpointEvery: 10 });
    events(log, 15);
    log.close();
    const ls = lines();
    save(rechain(ls.filter((_, i) => i !== 11))); // the checkpoint after the 10th event
    const r = verifyAudit([file], { certPem });
    expect(r.bad).toMatchObject({ kind: "missing-checkpoint", line: 12 });
    expect(r.bad!.message).toContain("11 events without a checkpoint");
  });

  test("each checkpoint carries the previous one's hash, across a restart", () => {
    const a = openLog({ checkpointEvery: 3 });
    events(a, 4);
    a.close(); // crash: the last event is unsigned
    const b = openLog({ checkpointEvery: 3 });
    events(b, 1);
    stop(b);
    const ls = lines();
    const cps = ls.map((l, i) => ({ l, i })).filter(({ l }) => isCheckpoint(l));
    expect(cps.map(({ l }) => JSON.parse(l).reason)).toEqual(["start", "count", "open", "stop"]);
    let prevCp = "0".repeat(64);
    for (const { l } of cps) {
      expect(JSON.parse(l).prevCheckpoint).toBe(prevCp);
      prevCp = sha256(l);
    }
    expect(verifyAudit([file], { certPem })).toMatchObject({ ok: true, cleanStop: true, warnings: [] });
  });

  test("the timer signs an idle log's last events", async () => {
    const log = openLog({ checkpointIntervalMs: 50 });
    log.append("lonely");
    const deadline = Date.now() + 10_000;
    while (!isCheckpoint(lines().at(-1)!) && Date.now() < deadline) await Bun.sleep(10);
    log.close();
    expect(JSON.parse(lines().at(-1)!)).toMatchObject({ event: "checkpoint", reason: "interval", seq: 3 });
    expect(verifyAudit([file], { certPem })).toMatchObject({
      ok: true,
      warnings: [expect.stringContaining("ends at a checkpoint the coordinator wrote while running")],
    });
  }, 15_000);

  test("rotation: each file starts signed, so the newest one alone still has a signed start", () => {
    const log = openLog({ rotateBytes: 2000 });
    events(log, 40);
    stop(log);
    const rotated = fs
      .readdirSync(dir)
      .filter((f) => f.startsWith("audit.jsonl."))
      .sort();
    expect(rotated.length).toBeGreaterThan(2);
    expect(
      lines()
        .slice(0, 2)
        .map((l) => [JSON.parse(l).event, JSON.parse(l).reason]),
    ).toEqual([
      ["rotate", undefined],
      ["checkpoint", "rotate"],
    ]);
    expect(verifyAudit([file], { certPem })).toMatchObject({ ok: true, cleanStop: true, warnings: [] });
    for (const f of rotated) fs.rmSync(path.join(dir, f));
    expect(verifyAudit([file], { certPem })).toMatchObject({ ok: true, continuesFrom: rotated.at(-1) });
  });
});
