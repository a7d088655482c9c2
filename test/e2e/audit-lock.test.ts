// The audit log cannot fork: a second coordinator on the same files exits before writing anything (naming
// the running one's pid), a coordinator whose port is taken writes nothing either, and the first one's log
// verifies. End to end with the compiled binary.
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { deploy, killAll, run, spawn, TESSERA } from "./harness.ts";
import { verifyAudit } from "../faults/audit-check.ts";
import { sigkill } from "../faults/kill.ts";

afterAll(killAll);

describe("one coordinator per audit log", () => {
  test("a second coordinator on the same files exits before writing; a taken port writes nothing; the first log verifies", async () => {
    const d = await deploy();
    const auditFile = path.join(d.dir, "audit.jsonl");
    const before = fs.readFileSync(auditFile);
    expect(before.length).toBeGreaterThan(0);

    // Same files, free ports: refused at the lock, naming the running coordinator's pid.
    const second = await run(
      ["coordinator", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", ...d.coordinatorArgs],
      {},
      d.dir,
    );
    expect(second.code).toBe(1);
    expect(second.err).toContain(`another coordinator (pid ${d.coordinator.proc.pid}) is running on the audit log`);
    expect(fs.readFileSync(auditFile).equals(before)).toBe(true);

    // Only the database shared: refused too (its audit log stays empty).
    const dbOnly = await run(
      [
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--certs",
        "pki",
        "--audit",
        "b.jsonl",
        "--db",
        "tessera.db",
      ],
      {},
      d.dir,
    );
    expect(dbOnly.code).toBe(1);
    expect(dbOnly.err).toContain(`(pid ${d.coordinator.proc.pid}) is running on the state database`);
    expect(fs.existsSync(path.join(d.dir, "b.jsonl")) ? fs.readFileSync(path.join(d.dir, "b.jsonl"), "utf8") : "").toBe(
      "",
    );

    // Own files, but --listen on the running coordinator's port and --http on a taken port: nothing written.
    for (const [flags, taken] of [
      [["--listen", `127.0.0.1:${d.port}`, "--http", "127.0.0.1:0"], "--listen"],
      [["--listen", "127.0.0.1:0", "--http", `127.0.0.1:${d.httpPort}`], "--http"],
    ] as const) {
      const own = await run(
        ["coordinator", ...flags, "--certs", "pki", "--audit", "own.jsonl", "--db", "own.db"],
        {},
        d.dir,
      );
      expect(own.code).toBe(1);
      expect(own.err).toContain(`cannot listen on ${taken}`);
      expect(fs.readFileSync(path.join(d.dir, "own.jsonl"), "utf8")).toBe("");
    }

    // The first coordinator is untouched: it still serves, and its log verifies whole and signed.
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(d.port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    expect(ok).toBe(true);
    d.coordinator.kill("SIGTERM");
    expect(await d.coordinator.exit()).toBe(0);
    const v = await verifyAudit(TESSERA, [auditFile], { cert: path.join(d.dir, "pki/coordinator.crt") });
    expect(v.out).toContain("ends with the signed checkpoint of a clean stop");
    expect(v.code).toBe(0);

    // Once it is gone, the lock is free again: a new coordinator starts on the same files.
    const again = spawn(
      ["coordinator", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", ...d.coordinatorArgs],
      {},
      { cwd: d.dir },
    );
    await again.waitFor(/listening on 127\.0\.0\.1:\d+/);
    again.kill("SIGTERM");
    const code = await again.exit();
    expect(code).toBe(0);
  }, 60_000);
});

describe("a torn last line from a crash", () => {
  test("is reported at start, set aside in a side file, never appended to; audit verify then passes", async () => {
    const d = await deploy();
    const auditFile = path.join(d.dir, "audit.jsonl");
    expect(await sigkill(d.coordinator)).not.toBe(0);
    // What a crash mid-write leaves: a line with no end.
    const torn = '{"seq":999,"ts":"2026-01-01T00:00:00.000Z","event":"stream.open","sessionId":"s-half';
    fs.appendFileSync(auditFile, torn);
    const broken = await verifyAudit(TESSERA, [auditFile]);
    expect(broken.code).toBe(1);
    d.coordinator = spawn(
      ["coordinator", "--listen", `127.0.0.1:${d.port}`, "--http", "127.0.0.1:0", ...d.coordinatorArgs],
      {},
      { cwd: d.dir },
    );
    const m = await d.coordinator.waitFor(
      /ended in a torn line \(\d+ bytes, left by a crash mid-write\): moved to (\S+);/,
    );
    const side = path.resolve(d.dir, m[1]!);
    expect(fs.readFileSync(side, "utf8")).toBe(torn);
    expect((fs.statSync(side).mode & 0o777).toString(8)).toBe("600");
    await d.coordinator.waitFor(/listening on/);
    d.coordinator.kill("SIGTERM");
    expect(await d.coordinator.exit()).toBe(0);
    const text = fs.readFileSync(auditFile, "utf8");
    expect(text).not.toContain("s-half");
    expect(text).toContain('"event":"recovered"');
    const v = await verifyAudit(TESSERA, [auditFile], { cert: path.join(d.dir, "pki/coordinator.crt") });
    expect(v.code).toBe(0);
  }, 60_000);
});
