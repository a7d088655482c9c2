// The console's server parts on their own: the operator gate (wrong tokens limited per address, refusals
// audited as one line), the audit view (tail, filters, the chain's state from the verify code, a tampered
// line reported), the chart sampler (rates between samples of the /metrics counters).
import { afterEach, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AuditLog } from "../../src/audit/log.ts";
import { verifyChains } from "../../src/audit/chains.ts";
import { AuditView } from "../../src/coordinator/audit-view.ts";
import { childVerifier } from "../../src/coordinator/audit-verify-run.ts";
import { TESSERA } from "../e2e/harness.ts";
import { ChartSampler } from "../../src/coordinator/chart.ts";
import { metrics } from "../../src/coordinator/metrics.ts";
import { hashToken, OperatorGate, WRONG_TOKENS_PER_MINUTE } from "../../src/coordinator/operator-gate.ts";
import { coordinatorIdentity } from "../audit-signer.ts";

let dir = "";
afterEach(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function lines(file: string): Record<string, unknown>[] {
  return fs
    .readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
}

test("the gate: wrong tokens from one address are refused, then blocked for the window (the right token too); other addresses are not; one refused line an address", async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-gate-"));
  const audit = AuditLog.open(path.join(dir, "audit.jsonl"));
  const gate = new OperatorGate({
    tokenHash: hashToken("right"),
    audit,
    windowMs: 60_000,
    maxAddresses: 10,
    warn: () => {},
  });
  const t0 = 1_000_000;
  expect(gate.check("Bearer right", "10.0.0.1", t0)).toBeUndefined();
  for (let i = 0; i < WRONG_TOKENS_PER_MINUTE; i++)
    expect(gate.check("Bearer wrong", "10.0.0.1", t0 + i)?.status).toBe(401);
  expect(gate.check(null, "10.0.0.1", t0 + 20)?.status).toBe(429);
  // Blocked: the right token waits too, so a lucky guess is not told apart from a wrong one.
  expect(gate.check("Bearer right", "10.0.0.1", t0 + 30)?.status).toBe(429);
  expect(gate.check("Bearer right", "10.0.0.2", t0 + 30)).toBeUndefined();
  // After the window the address may try again.
  expect(gate.check("Bearer right", "10.0.0.1", t0 + 20 + 60_000)).toBeUndefined();
  await gate.flush();
  audit.close();
  const refused = lines(path.join(dir, "audit.jsonl")).filter((l) => l.event === "refused");
  expect(refused).toEqual([
    expect.objectContaining({
      addr: "10.0.0.1",
      attempts: 12,
      reasons: "operator.bad_token=10 operator.rate_limited=2",
    }),
  ]);
  const off = new OperatorGate({ tokenHash: undefined, audit, windowMs: 60_000, maxAddresses: 10, warn: () => {} });
  expect(off.check("Bearer right", "10.0.0.1")?.status).toBe(403);
});

test("the audit view: the last N lines, filtered by session, host or guest, across read chunks; the chain verified by `tessera audit verify` in a child process, then a tampered line named", async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-auditview-"));
  const id = await coordinatorIdentity();
  const file = path.join(dir, "audit.jsonl");
  const certFile = path.join(dir, "coordinator.crt");
  fs.writeFileSync(certFile, id.certPem);
  const audit = AuditLog.open(file, { signingKeyPem: id.keyPem, checkpointEvery: 1000, checkpointIntervalMs: 60_000 });
  // Lines of ~1 KiB: the last 500 span several of the view's 64 KiB reads.
  for (let i = 0; i < 600; i++)
    audit.append("stream.close", {
      sessionId: `s-${i % 3}`,
      host: i % 2 ? "box" : "db",
      guest: "alice",
      bytesUp: i,
      pad: "x".repeat(900 + (i % 7) * 37),
    });
  audit.append("session.open", { sessionId: "s-9", host: "box", guest: "bob\u202e" });
  audit.close();
  const all = fs
    .readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const inProcess = async (f: string) => verifyChains([f], { certPem: id.certPem }).chains[0]!;
  // The child runs the built binary when there is one (the e2e tests build it), else the CLI under bun.
  const view = new AuditView(() => file, childVerifier(certFile, TESSERA));
  expect(view.lines({ n: 5 }).map((l) => l.seq)).toEqual([598, 599, 600, 601, 602]);
  expect(view.lines({ n: 500 })).toEqual(all.slice(-500));
  expect(view.lines({ n: 500, session: "s-1" })).toEqual(all.filter((l) => l.sessionId === "s-1").slice(-500));
  expect(view.lines({ n: 100, host: "box", session: "s-1" })).toHaveLength(100);
  expect(view.lines({ n: 100, guest: "bob\\u202e" }).map((l) => l.sessionId)).toEqual(["s-9"]);
  const ok = await view.chain(1);
  expect(ok).toMatchObject({ ok: true, lastSeq: 602, checkpoint: { seq: 1 }, unsignedLines: 601 });
  expect(ok.summary).toMatch(
    /^verified up to seq 602, signed checkpoint at \S+ \(seq 1\), unsigned tail of 601 lines$/,
  );
  // Someone edits a byte count: the next walk (the file changed, the last walk is old) names the line.
  fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace('"bytesUp":7,', '"bytesUp":8,'));
  // The page is answered at once with the last state while the walk runs; the walk's state comes next.
  expect((await view.chain(1 + 10_000)).ok).toBe(true);
  await view.idle();
  const bad = await view.chain(2 + 10_000);
  expect(bad.ok).toBe(false);
  expect(bad.summary).toBe("BROKEN: line 9 was edited: its hash no longer matches the prev recorded on line 10");
  // The same verdict as the verify code run in this process.
  expect((await inProcess(file)).bad?.message).toBe(bad.bad?.message);
  // Lines appended later are read on the next call (only they: the tail is kept parsed).
  const again = AuditLog.open(file);
  again.append("later", { sessionId: "s-10" });
  again.close();
  expect(view.lines({ n: 2 }).map((l) => l.event)).toEqual(["session.open", "later"]);
  // A verifier that cannot run is said, not hidden.
  const broken = new AuditView(
    () => file,
    async () => {
      throw new Error("no such program");
    },
  );
  expect(await broken.chain(5)).toMatchObject({ ok: false, summary: "not checked: no such program" });
});

test("the chart: the counters /metrics serves, sampled, answered as rates per second with the live session count", () => {
  let sessions = 2;
  const chart = new ChartSampler(() => sessions, 10_000);
  const base = chart.points(0).points;
  expect(base).toEqual([]);
  // Two samples taken by hand through the timer's own path: start() takes the first.
  chart.start();
  chart.stop();
  const t0 = Date.now();
  metrics.streamsTotal.inc(20);
  metrics.bytesRelayed.inc(50_000, { direction: "guest_to_agent" });
  metrics.bytesDirect.inc(10_000);
  metrics.operatorRefusals.inc(5, { reason: "bad_token" });
  sessions = 3;
  const [p] = chart.points(t0 + 10_000).points;
  expect(p).toMatchObject({ sessions: 3 });
  expect(p!.streamsPerSec).toBeCloseTo(2, 1);
  expect(p!.relayedBytesPerSec).toBeCloseTo(5000, -1);
  expect(p!.directBytesPerSec).toBeCloseTo(1000, -1);
  expect(p!.refusalsPerSec).toBeCloseTo(0.5, 1);
});
