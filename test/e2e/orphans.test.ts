// Every open gets a close: a coordinator SIGKILLed with live streams, then restarted, writes a stream.close
// for each ("coordinator lost", last known bytes, estimated), and the session's close totals include the
// streams from before the crash. End to end with the compiled binary; checked with test/faults/audit-check.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import net from "node:net";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { auditEvents, deploy, echoServer, joinApproved, killAll, roundTrip, share, spawn, TESSERA } from "./harness.ts";
import { checkOpenClose, problems, readAudit, verifyAudit } from "../faults/audit-check.ts";
import { sigkill } from "../faults/kill.ts";

afterAll(killAll);

/** A connection held open through the tunnel, with a payload echoed back in full. */
async function held(port: number, payload: Buffer): Promise<net.Socket> {
  const s = net.connect({ port, host: "127.0.0.1" });
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    s.on("data", (d) => {
      got += d.length;
      if (got >= payload.length) resolve();
    });
    s.once("error", reject);
    s.write(payload);
  });
  s.on("error", () => {});
  return s;
}

describe("every open gets a close", () => {
  test("SIGKILL with live streams, restart: each gets its estimated close, session totals include them", async () => {
    const d = await deploy(["--resume-grace", "60s"]);
    const echo = await echoServer();
    const { host, code } = await share(d, echo.port);
    // Relayed streams: the ones a coordinator's death cuts (a direct stream outlives it).
    const { guest, local } = await joinApproved(d, host, code, "ann", ["--relay-only"]);
    const short = randomBytes(10_000);
    expect((await roundTrip(local, short)).equals(short)).toBe(true);

    // Stream A: open long enough for the store's batch to hold it (its row appears), with bytes moved.
    const a = await held(local, randomBytes(20_000));
    const [openA] = (await auditEvents(d, "stream.open", 2)).slice(-1);
    const db = new Database(path.join(d.dir, "tessera.db"), { readonly: true });
    const rowOf = (id: string) =>
      db.query("SELECT bytes_up, bytes_down FROM open_streams WHERE id = ?").get(id) as {
        bytes_up: number;
        bytes_down: number;
      } | null;
    const deadline = Date.now() + 20_000;
    while (!(rowOf(String(openA!.streamId))?.bytes_up ?? 0) && Date.now() < deadline) await Bun.sleep(50);
    const rowA = rowOf(String(openA!.streamId));
    db.close();
    // The agent's count of the stream's bytes (the channel's frames are not the stream's).
    expect(rowA?.bytes_up).toBeGreaterThanOrEqual(20_000);
    // Stream B: opened just before the crash (only the audit log knows it).
    const b = await held(local, randomBytes(5_000));
    await auditEvents(d, "stream.open", 3);

    expect(await sigkill(d.coordinator)).not.toBe(0);
    const before = readAudit(path.join(d.dir, "audit.jsonl"));
    expect(checkOpenClose(before).unclosed.length).toBe(2);
    a.destroy();
    b.destroy();

    d.coordinator = spawn(
      ["coordinator", "--listen", `127.0.0.1:${d.port}`, "--http", "127.0.0.1:0", ...d.coordinatorArgs],
      {},
      { cwd: d.dir },
    );
    await d.coordinator.waitFor(/closed 2 stream\(s\) and 0 session\(s\) left open/);
    const lost = (await auditEvents(d, "stream.close", 3)).filter((l) => l.reason === "coordinator lost");
    expect(lost).toHaveLength(2);
    expect(lost.every((l) => l.estimated === true)).toBe(true);
    const lostA = lost.find((l) => l.streamId === openA!.streamId)!;
    expect(lostA.bytesUp).toBe(rowA!.bytes_up);

    // The guest resumes without a new yes and uses the session again, then ends it: its totals add up.
    await host.waitFor(/reconnected to the coordinator/);
    await guest.waitFor(/session s-[\w-]+ resumed/);
    let echoed: Buffer | undefined;
    for (let i = 0; i < 50 && !echoed?.length; i++) echoed = await roundTrip(local, short).catch(() => undefined);
    expect(echoed?.equals(short)).toBe(true);
    guest.kill("SIGTERM");
    await guest.exit();
    const [close] = await auditEvents(d, "session.close");
    const lines = readAudit(path.join(d.dir, "audit.jsonl"));
    const report = checkOpenClose(lines);
    expect(problems(report)).toEqual([]);
    expect(report.estimated).toBe(2);
    expect(Number(close!.streams)).toBeGreaterThanOrEqual(4);
    expect(Number(close!.bytesUp)).toBeGreaterThanOrEqual(short.length * 2 + 20_000);

    host.kill("SIGTERM");
    await host.exit();
    d.coordinator.kill("SIGTERM");
    await d.coordinator.exit();
    const v = await verifyAudit(TESSERA, [path.join(d.dir, "audit.jsonl")], {
      cert: path.join(d.dir, "pki/coordinator.crt"),
    });
    expect(v.code).toBe(0);
  }, 90_000);
});
