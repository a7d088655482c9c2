// A full audit disk (a real 256 KiB tmpfs; needs root, skipped with a reason otherwise): no torn line,
// new streams refused with a clear error while the session and its open stream go on, the host told on
// its terminal, appending resumed by itself once space is freed, and `audit verify` passing over the log.
import { afterAll, describe, expect, test } from "bun:test";
import net from "node:net";
import path from "node:path";
import { deploy, echoServer, joinApproved, killAll, restartCoordinator, roundTrip, share, TESSERA } from "./harness.ts";
import { checkOpenClose, firstTornLine, problems, readAudit, verifyAudit } from "../faults/audit-check.ts";
import { mountTmpfs, unmountAll } from "../faults/tmpfs.ts";

afterAll(async () => {
  await killAll();
  await unmountAll();
});

/** A connection kept open through the tunnel: write, read the echo back. */
async function heldStream(port: number): Promise<{ echo: (s: string) => Promise<string>; end: () => void }> {
  const s = net.connect({ port, host: "127.0.0.1" });
  await new Promise<void>((r, j) => {
    s.once("connect", r);
    s.once("error", j);
  });
  let got = "";
  let want = 0;
  let done: (() => void) | undefined;
  s.on("data", (d) => {
    got += d.toString();
    if (got.length >= want) done?.();
  });
  return {
    echo: (text) =>
      new Promise<string>((resolve, reject) => {
        got = "";
        want = text.length;
        done = () => resolve(got);
        s.once("close", () => reject(new Error(`the held stream closed (had "${got}")`)));
        s.write(text);
      }),
    end: () => s.end(),
  };
}

describe("audit disk full", () => {
  test("refuses new streams, keeps the open ones, tells the host, resumes by itself, and the log verifies", async () => {
    const disk = await mountTmpfs("256k");
    if (typeof disk === "string") return console.warn(`skipped: ${disk}`);
    const d = await deploy();
    const auditFile = path.join(disk.dir, "audit.jsonl");
    d.coordinatorArgs = d.coordinatorArgs.map((a) => (a === "audit.jsonl" ? auditFile : a));
    await restartCoordinator(d, "SIGTERM");
    const target = await echoServer();
    const { host, code } = await share(d, target.port);
    const { guest, local } = await joinApproved(d, host, code, "alice");
    expect((await roundTrip(local, Buffer.from("before"))).toString()).toBe("before");
    const held = await heldStream(local);
    expect(await held.echo("held-1")).toBe("held-1");

    disk.fill();
    // New connections through the tunnel: once the log's last page is used up (tmpfs allocates by page, so
    // a few lines may still fit), a stream is refused (no audit line, no bytes) and the session stays.
    let refusedAfter = 0;
    for (; refusedAfter < 40; refusedAfter++) {
      const got = await roundTrip(local, Buffer.from("during")).catch(() => Buffer.alloc(0));
      if (got.length === 0) break;
      expect(got.toString()).toBe("during");
    }
    expect(refusedAfter).toBeLessThan(40);
    await guest.waitFor(/audit disk is full/);
    await host.waitFor(/the coordinator says: the coordinator's audit disk is full/);
    expect(await held.echo("held-2")).toBe("held-2");
    expect(firstTornLine(auditFile)).toBe(0);
    const health = await fetch(`http://127.0.0.1:${d.httpPort}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.text()).toContain("audit disk is full");

    disk.free();
    await host.waitFor(/audit disk has room again/);
    expect((await roundTrip(local, Buffer.from("after"))).toString()).toBe("after");
    expect(await held.echo("held-3")).toBe("held-3");
    expect((await fetch(`http://127.0.0.1:${d.httpPort}/healthz`)).status).toBe(200);

    held.end();
    guest.kill("SIGTERM");
    await guest.exit();
    host.kill("SIGTERM");
    await host.exit();
    d.coordinator.kill("SIGTERM");
    expect(await d.coordinator.exit()).toBe(0);

    expect(firstTornLine(auditFile)).toBe(0);
    const v = await verifyAudit(TESSERA, [auditFile], { cert: path.join(d.dir, "pki/coordinator.crt") });
    expect(v.out).toContain("ok:");
    expect(v.code).toBe(0);
    const lines = readAudit(auditFile);
    const resume = lines.find((l) => l.event === "audit.resume");
    expect(resume?.refused).toBeGreaterThanOrEqual(1);
    expect(problems(checkOpenClose(lines))).toEqual([]);
    expect(lines.filter((l) => l.event === "stream.open").length).toBe(3 + refusedAfter);
    await disk.unmount();
  }, 90_000);
});
