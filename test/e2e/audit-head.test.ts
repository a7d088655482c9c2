// A running coordinator serves its signed audit head (GET /audit/head); `audit verify --against` catches
// a copy of the live log whose tail was cut, which the file alone cannot show.
import { afterEach, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { deploy, echoServer, joinApproved, killAll, run, share } from "./harness.ts";

afterEach(killAll);

test("audit verify --against the running coordinator detects a truncated copy of the live log", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  await joinApproved(d, host, code, "ann");
  const base = `http://127.0.0.1:${d.httpPort}`;
  const live = path.join(d.dir, "audit.jsonl");
  const cert = path.join(d.dir, "pki/coordinator.crt");

  const res = await fetch(`${base}/audit/head`);
  expect(res.status).toBe(200);
  const head = (await res.json()) as { seq: number; hash: string; ts: string; at: string; sig: string };
  expect(head.hash).toMatch(/^[0-9a-f]{64}$/);
  expect(head.sig.length).toBeGreaterThan(0);
  expect(head.seq).toBeGreaterThan(3);
  // The first line the coordinator wrote is signed.
  expect(d.audit()[0]).toMatchObject({ seq: 1, event: "checkpoint", reason: "start", intervalMs: 60_000 });

  const whole = await run(["audit", "verify", live, "--cert", cert, "--against", base]);
  expect(whole.err).toBe("");
  expect(whole.code).toBe(0);
  expect(whole.out).toMatch(/reaches the running coordinator's signed head: seq \d+/);

  // A copy cut just before the head fetched above: the head served at verify time is at least that far.
  const copy = path.join(d.dir, "copy.jsonl");
  const kept = fs
    .readFileSync(live, "utf8")
    .split(/(?<=\n)/)
    .filter((l) => l && (JSON.parse(l) as { seq: number }).seq < head.seq);
  fs.writeFileSync(copy, kept.join(""));
  const offline = await run(["audit", "verify", copy, "--cert", cert]);
  expect(offline.code).toBe(0);
  expect(offline.out).toContain("warning: ");
  const cut = await run(["audit", "verify", copy, "--cert", cert, "--against", base]);
  expect(cut.code).toBe(1);
  expect(cut.err).toContain(`the log ends at seq ${head.seq - 1}`);
  expect(cut.err).toMatch(/but the coordinator's signed head is seq \d+ .*missing from the end/);

  // The CA's certificate in place of the coordinator's is named for what it is.
  const ca = await run(["audit", "verify", live, "--cert", path.join(d.dir, "pki/ca.crt"), "--against", base]);
  expect(ca.code).toBe(1);
  expect(ca.err).toContain("that is the CA, not the coordinator's certificate");
  // A head checked with another key (a certificate made here) is refused, whatever the file says.
  const other = path.join(d.dir, "other.crt");
  const made = Bun.spawnSync(
    ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"].concat([
      "-subj",
      "/CN=someone-else",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-keyout",
      path.join(d.dir, "other.key"),
      "-out",
      other,
    ]),
  );
  expect(made.exitCode).toBe(0);
  const wrong = await run(["audit", "verify", live, "--cert", other, "--against", base]);
  expect(wrong.code).toBe(1);
  expect(wrong.err).toContain("is not signed by the coordinator whose certificate was given");
  // --against without --cert could not check the head at all.
  const unchecked = await run(["audit", "verify", live, "--against", base]);
  expect(unchecked.code).toBe(1);
  expect(unchecked.err).toContain("--against needs --cert");
}, 60_000);
