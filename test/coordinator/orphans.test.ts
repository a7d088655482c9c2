// src/coordinator/orphans.ts over a real SQLite store and audit file: every stream the store (or the log
// past the store's last batch) shows open gets one estimated close, session totals then count it, and a
// second run finds nothing left to do.
import { afterEach, beforeEach, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Store } from "../../src/store/store.ts";
import { AuditLog } from "../../src/audit/log.ts";
import { closeOrphans, LOST } from "../../src/coordinator/orphans.ts";
import { checkOpenClose, problems, readAudit } from "../faults/audit-check.ts";

let dir: string;
let store: Store;
let audit: AuditLog;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-orphans-"));
  store = await Store.open(path.join(dir, "t.db"));
  audit = AuditLog.open(path.join(dir, "audit.jsonl"));
  await store.putShare({ id: "sh-1", hostSpki: "SHA256:h", hostName: "hosty", targets: ["127.0.0.1:1"] }, 1);
  await store.openSession({
    id: "s-1",
    shareId: "sh-1",
    guestSpki: "SHA256:g",
    guestName: "ann",
    guestAddr: "127.0.0.1:9",
    hostName: "hosty",
    target: "127.0.0.1:1",
    openedAt: 1,
  });
});

afterEach(async () => {
  audit.close();
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const row = (id: string, up: number, down: number, node = "n1") => ({
  id,
  sessionId: "s-1",
  node,
  openedAt: 1,
  bytesUp: up,
  bytesDown: down,
});

test("adoption: the dead node's open streams of the share get estimated closes, totals count them, once", async () => {
  for (const id of ["t-1", "t-2"]) audit.append("stream.open", { sessionId: "s-1", streamId: id });
  await store.streams.apply({
    node: "n1",
    // t-9 is a live node's (n2): never touched by n1's adoption.
    opened: [row("t-1", 100, 200), row("t-2", 5, 6), row("t-9", 1, 1, "n2")],
    closed: [],
    bytes: [{ id: "t-1", up: 150, down: 250 }],
    totals: [{ sessionId: "s-1", streams: 3, up: 10, down: 20 }],
    auditSeq: 0,
  });
  expect(await closeOrphans(store, audit, { shareId: "sh-1", node: "n1" })).toMatchObject({ streams: 2 });
  const closes = readAudit(audit.path).filter((l) => l.event === "stream.close");
  expect(closes.map((c) => [c.streamId, c.bytesUp, c.bytesDown, c.reason, c.estimated])).toEqual([
    ["t-1", 150, 250, LOST, true],
    ["t-2", 5, 6, LOST, true],
  ]);
  const [s] = await store.openSessions();
  expect(s).toMatchObject({ streams: 3, bytesUp: 10 + 150 + 5, bytesDown: 20 + 250 + 6 });
  expect(await closeOrphans(store, audit, { shareId: "sh-1", node: "n1" })).toMatchObject({ streams: 0 });
  expect((await store.streams.open({ node: "n2" })).map((r) => r.id)).toEqual(["t-9"]);
  expect(readAudit(audit.path).filter((l) => l.event === "stream.close")).toHaveLength(2);
});

test("restart: the log past the store's last batch is replayed; closes already written are not repeated", async () => {
  // Batch at seq 1 knows t-1 open; then t-1 closes (seq 2), t-2 opens and closes (3, 4), t-3 opens (5): crash.
  audit.append("stream.open", { sessionId: "s-1", streamId: "t-1" });
  await store.streams.apply({
    node: "",
    opened: [row("t-1", 7, 8, "")],
    closed: [],
    bytes: [],
    totals: [{ sessionId: "s-1", streams: 1, up: 0, down: 0 }],
    auditSeq: audit.lastSeq,
  });
  audit.append("stream.close", { sessionId: "s-1", streamId: "t-1", bytesUp: 70, bytesDown: 80 });
  audit.append("stream.open", { sessionId: "s-1", streamId: "t-2" });
  audit.append("stream.close", { sessionId: "s-1", streamId: "t-2", bytesUp: 1, bytesDown: 2 });
  audit.append("stream.open", { sessionId: "s-1", streamId: "t-3" });
  expect(await closeOrphans(store, audit, { node: "" })).toMatchObject({ streams: 1, sessions: 0 });
  const lines = readAudit(audit.path);
  expect(problems(checkOpenClose(lines))).toEqual([]);
  const lost = lines.filter((l) => l.reason === LOST);
  expect(lost.map((l) => [l.streamId, l.bytesUp, l.estimated])).toEqual([["t-3", 0, true]]);
  const [s] = await store.openSessions();
  expect(s).toMatchObject({ streams: 3, bytesUp: 71, bytesDown: 82 });
  // Run again (a second restart with nothing new): nothing is written, the totals stay.
  expect(await closeOrphans(store, audit, { node: "" })).toMatchObject({ streams: 0 });
  expect((await store.openSessions())[0]).toMatchObject({ streams: 3, bytesUp: 71, bytesDown: 82 });
});

test("a single coordinator's session whose share closed gets a session.close line", async () => {
  await store.closeShare("sh-1", 2);
  expect(await closeOrphans(store, audit, { node: "" })).toMatchObject({ sessions: 1 });
  const close = readAudit(audit.path).find((l) => l.event === "session.close");
  expect(close).toMatchObject({ sessionId: "s-1", estimated: true });
  expect(String(close?.reason)).toContain(LOST);
  expect(await store.openSessions()).toEqual([]);
});
