// `audit verify` over several nodes' logs at once: one chain per node (found by rotation lines, not names), each verified fully.
import { afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AuditLog, type AuditOptions } from "../src/audit/log.ts";
import { groupChains, verifyChains } from "../src/audit/chains.ts";
import { coordinatorIdentity } from "./audit-signer.ts";
import { run } from "./e2e/harness.ts";

let dir: string;
let keyPem: string;
let certPem: string;
let certFile: string;

beforeAll(async () => {
  ({ keyPem, certPem } = await coordinatorIdentity());
});
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-chains-"));
  certFile = path.join(dir, "coordinator.crt");
  fs.writeFileSync(certFile, certPem);
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** One node's log as its coordinator writes it (same key for every node, as they share the CA and certificate). */
function node(name: string, events: number, o: Partial<AuditOptions> = {}): string {
  fs.mkdirSync(path.join(dir, name), { recursive: true });
  const file = path.join(dir, name, "audit.jsonl");
  const log = AuditLog.open(file, { signingKeyPem: keyPem, checkpointEvery: 1000, checkpointIntervalMs: 60_000, ...o });
  log.append("coordinator.start", { node: name });
  for (let i = 1; i <= events; i++)
    log.append("stream.close", { sessionId: `${name}-${i}`, guest: "ann", bytesUp: i * 100, bytesDown: i });
  log.append("coordinator.stop");
  log.checkpoint();
  log.close();
  return file;
}

describe("audit verify over several nodes", () => {
  test("three nodes' logs are three chains, and each verifies", async () => {
    const files = [node("n1", 5), node("n2", 7), node("n3", 3)];
    const r = verifyChains(files, { certPem });
    expect(r.ok).toBe(true);
    expect(r.chains.map((c) => [c.files, c.events, c.cleanStop])).toEqual([
      [[files[0]], 9, true],
      [[files[1]], 11, true],
      [[files[2]], 7, true],
    ]);
    const cli = await run(["audit", "verify", ...files, "--cert", certFile]);
    expect({ code: cli.code, err: cli.err }).toEqual({ code: 0, err: "" });
    for (const f of files) expect(cli.out).toContain(`: ${f}\n`);
    expect(cli.out).toContain("overall: ok, all 3 chains verify");
  });

  test("one tampered chain fails naming its file; the others still verify", async () => {
    const files = [node("n1", 5), node("n2", 7), node("n3", 3)];
    const t = fs.readFileSync(files[1]!, "utf8").replace('"bytesUp":300', '"bytesUp":301');
    fs.writeFileSync(files[1]!, t);
    const r = verifyChains(files, { certPem });
    expect(r.ok).toBe(false);
    expect(r.chains.map((c) => c.ok)).toEqual([true, false, true]);
    expect(r.chains[1]!.bad).toMatchObject({ file: files[1], kind: "edited" });
    const cli = await run(["audit", "verify", ...files, "--cert", certFile]);
    expect(cli.code).toBe(1);
    expect(cli.err).toContain(`FAILED: ${files[1]}: line 5 was edited`);
    expect(cli.out).toContain(`overall: FAILED, 1 of 3 chains broken (${files[1]})`);
    expect(cli.out.match(/^ok: /gm)?.length).toBe(2);
  });

  test("a rotated chain mixed with others groups by its rotation lines, whatever the order or the names", () => {
    const n1 = node("n1", 40, { rotateBytes: 1500 });
    const n2 = node("n2", 4);
    const n3 = node("n3", 6);
    const rotated = fs
      .readdirSync(path.dirname(n1))
      .filter((f) => f.startsWith("audit.jsonl."))
      .sort()
      .map((f) => path.join(dir, "n1", f));
    expect(rotated.length).toBeGreaterThan(2);
    // The newest file alone finds the files it continues beside it.
    const r = verifyChains([n2, n1, n3], { certPem });
    expect(r.ok).toBe(true);
    expect(r.chains.map((c) => c.files)).toEqual([[n2], [...rotated, n1], [n3]]);
    // Rotated files given among the others, out of order, join their own chain and nothing else.
    const mixed = verifyChains([rotated[1]!, n3, n1, rotated[0]!, n2], { certPem });
    expect(mixed.ok).toBe(true);
    expect(mixed.chains.map((c) => c.files)).toEqual([[...rotated, n1], [n3], [n2]]);
    // Gathered into one folder under new names: the rotation line's hash still finds the file it continues.
    const flat = path.join(dir, "flat");
    fs.mkdirSync(flat);
    const copies = [...rotated, n1].map((f, i) => {
      const to = path.join(flat, `node1-part${i}.jsonl`);
      fs.copyFileSync(f, to);
      return to;
    });
    fs.copyFileSync(n2, path.join(flat, "node2.jsonl"));
    const shuffled = [copies[2]!, path.join(flat, "node2.jsonl"), ...copies.slice(0, 2), ...copies.slice(3)];
    const g = groupChains(shuffled);
    expect(g.chains.map((c) => c.files)).toEqual([copies, [path.join(flat, "node2.jsonl")]]);
    expect(verifyChains(shuffled, { certPem }).ok).toBe(true);
  });

  test("a missing middle file splits nothing: its chain continues from a file that is not here", () => {
    const n1 = node("n1", 40, { rotateBytes: 1500 });
    const n2 = node("n2", 4);
    const rotated = fs
      .readdirSync(path.dirname(n1))
      .filter((f) => f.startsWith("audit.jsonl."))
      .sort();
    fs.rmSync(path.join(dir, "n1", rotated[1]!));
    const r = verifyChains([n1, n2], { certPem });
    expect(r.chains.length).toBe(2);
    expect(r.chains[0]).toMatchObject({ ok: true, continuesFrom: rotated[1] });
  });

  test("--against stays one chain: several nodes' files with it are refused with a clear error", async () => {
    const files = [node("n1", 2), node("n2", 2)];
    const cli = await run(["audit", "verify", ...files, "--cert", certFile, "--against", "http://127.0.0.1:1"]);
    expect(cli.code).not.toBe(0);
    expect(cli.err).toContain("these files hold 2 separate chains");
  });
});
