// Running a coordinator in production: /metrics counts what really happened, the HTTP endpoints
// serve HTTPS with --http-cert/--http-key, and --log-format json keeps every stderr line parseable
// and free of secrets.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import {
  deploy,
  echoServer,
  joinApproved,
  killAll,
  roundTrip,
  run,
  share,
  spawn,
  tmpDir,
  type Deployment,
  type Proc,
} from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

const HTTPS = ["--http-cert", "pki/coordinator.crt", "--http-key", "pki/coordinator.key", "--log-format", "json"];

/** Parses Prometheus text: every sample line into name{labels} -> value, checking HELP/TYPE precede each family. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  const typed = new Set<string>();
  const helped = new Set<string>();
  for (const line of text.trimEnd().split("\n")) {
    const meta = /^# (HELP|TYPE) (\S+) (.+)$/.exec(line);
    if (meta) {
      (meta[1] === "HELP" ? helped : typed).add(meta[2]!);
      if (meta[1] === "TYPE") expect(["counter", "gauge"]).toContain(meta[3]!);
      continue;
    }
    const m = /^([a-z_]+)(\{[^}]*\})? (\d+(?:\.\d+)?)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    expect(typed.has(m[1]!) && helped.has(m[1]!)).toBe(true);
    out.set(m[1]! + (m[2] ?? ""), Number(m[3]));
  }
  return out;
}

/** GET /metrics over HTTPS trusting `ca`, or over plain HTTP without one. */
async function scrape(d: Deployment, ca?: string): Promise<Map<string, number>> {
  const res = await fetch(
    ca ? `https://localhost:${d.httpPort}/metrics` : `http://127.0.0.1:${d.httpPort}/metrics`,
    ca ? { tls: { ca } } : {},
  );
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain; version=0.0.4");
  return parseMetrics(await res.text());
}

/** Polls /metrics until `want` holds (the coordinator sees a close a moment after the client does). */
async function scrapeUntil(
  d: Deployment,
  ca: string | undefined,
  want: (m: Map<string, number>) => boolean,
): Promise<Map<string, number>> {
  for (;;) {
    const m = await scrape(d, ca);
    if (want(m)) return m;
    await Bun.sleep(50);
  }
}

function jsonLines(p: Proc): Record<string, unknown>[] {
  return p.err
    .trimEnd()
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line);
      } catch {
        throw new Error(`stderr line is not JSON: ${JSON.stringify(line)}`);
      }
      expect(typeof obj.level).toBe("string");
      expect(typeof obj.msg).toBe("string");
      expect(Number.isNaN(Date.parse(String(obj.time)))).toBe(false);
      return obj;
    });
}

test("metrics over HTTPS count a real session, a refusal, a denial and a revoke; JSON logs stay parseable and secret-free", async () => {
  const d = await deploy(HTTPS);
  const ca = fs.readFileSync(path.join(d.dir, "pki/ca.crt"), "utf8");
  const operatorToken = fs.readFileSync(path.join(d.dir, "pki/operator-token"), "utf8").trim();

  // HTTPS with the deployment's CA; plain HTTP on the same port gets no answer.
  const health = await fetch(`https://localhost:${d.httpPort}/healthz`, { tls: { ca } });
  expect(await health.text()).toMatch(/^ok v\d/);
  expect(
    await fetch(`http://127.0.0.1:${d.httpPort}/healthz`).then(
      (r) => r.status,
      () => "refused",
    ),
  ).not.toBe(200);

  const before = await scrape(d, ca);
  expect(before.get("tessera_sessions_active")).toBe(0);
  expect(before.get('tessera_requests_total{outcome="approved"}')).toBe(0);

  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  // A code nobody minted: refused and counted.
  const bad = await run(["join", "ZZZZ-ZZZZ", "--name", "eve", "--local", "127.0.0.1:0"], d.guestEnv);
  expect(bad.code).not.toBe(0);

  // On the relay for sure: this test counts the bytes the coordinator relays (test/e2e/direct.test.ts has the direct path).
  const { guest, local } = await joinApproved(d, host, code, "alice", ["--relay-only"]);
  const payload = randomBytes(200_000);
  expect((await roundTrip(local, payload)).equals(payload)).toBe(true);

  // A second code, and the host says n to it.
  host.write("c\n");
  await host.waitFor(/code: [0-9A-Z]{4}-[0-9A-Z]{4}[\s\S]*code: ([0-9A-Z]{4}-[0-9A-Z]{4})/);
  const code2 = [...host.all.matchAll(/code: ([0-9A-Z]{4}-[0-9A-Z]{4})/g)][1]![1]!;
  const mallory = spawn(["join", code2, "--name", "mallory", "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(/Allow mallory /);
  host.write("n\n");
  expect(await mallory.exit()).not.toBe(0);

  const live = await scrapeUntil(d, ca, (m) => m.get("tessera_streams_active") === 0);
  expect(live.get("tessera_sessions_active")).toBe(1);
  expect(live.get("tessera_sessions_total")).toBe(1);
  expect(live.get("tessera_streams_total")).toBe(1);
  expect(live.get("tessera_agents_connected")).toBe(1);
  expect(live.get("tessera_requests_pending")).toBe(0);
  expect(live.get('tessera_requests_total{outcome="approved"}')).toBe(1);
  expect(live.get('tessera_requests_total{outcome="denied"}')).toBe(1);
  expect(live.get('tessera_requests_total{outcome="expired"}')).toBe(0);
  expect(live.get('tessera_code_redemption_failures_total{reason="invalid"}')).toBe(1);
  // The stream's bytes each way (the agent's count, inside the session's channel), the same figure the audit log has.
  const up = live.get('tessera_relayed_bytes_total{direction="guest_to_agent"}')!;
  const down = live.get('tessera_relayed_bytes_total{direction="agent_to_guest"}')!;
  expect(up).toBe(payload.length);
  expect(down).toBe(payload.length);
  const close = d.audit().find((e) => e.event === "stream.close")!;
  expect([close.bytesUp, close.bytesDown]).toEqual([up, down]);

  // The operator revokes the session over HTTPS with `tessera revoke`, trusting the linked CA.
  const sessionId = String(d.audit().find((e) => e.event === "session.open")!.sessionId);
  const opEnv = { TESSERA_HOME: path.join(d.dir, "operator") };
  expect((await run(["link", d.address, "--ca-file", "pki/ca.crt"], opEnv, d.dir)).code).toBe(0);
  expect((await run(["token", operatorToken], opEnv)).code).toBe(0);
  const revoked = await run(["revoke", sessionId, "--url", `https://localhost:${d.httpPort}`], opEnv);
  expect(revoked.err).toBe("");
  expect(revoked.out).toContain(`revoked ${sessionId}`);
  await guest.waitFor(/revoked by the operator/);
  await guest.exit();
  const after = await scrapeUntil(d, ca, (m) => m.get("tessera_sessions_active") === 0);
  expect(after.get("tessera_sessions_total")).toBe(1);

  host.kill("SIGINT");
  await host.exit();
  await scrapeUntil(d, ca, (m) => m.get("tessera_agents_connected") === 0);
  d.coordinator.kill("SIGTERM");
  expect(await d.coordinator.exit()).toBe(0);

  // Every stderr line of the coordinator is a JSON object with time, level and msg, and none
  // carries a secret: not the operator token, not a code, not the enrolment token, not a key.
  const lines = jsonLines(d.coordinator);
  expect(lines.some((l) => l.level === "info" && String(l.msg).includes("listening on"))).toBe(true);
  expect(lines.some((l) => String(l.msg).includes("shutting down"))).toBe(true);
  const enrollToken = fs.readFileSync(path.join(d.dir, "pki/enroll-token"), "utf8").trim();
  for (const secret of [operatorToken, code, code2, code.replace("-", ""), enrollToken, "PRIVATE KEY"])
    expect(d.coordinator.err).not.toContain(secret);
});

test("a request nobody answers counts as expired; a used code counts as a redemption failure", async () => {
  const d = await deploy([...HTTPS, "--approval-timeout", "1s"]);
  const ca = fs.readFileSync(path.join(d.dir, "pki/ca.crt"), "utf8");
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const guest = spawn(["join", code, "--name", "bob", "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(/Allow bob /);
  expect(await guest.exit()).not.toBe(0);
  expect(guest.err).toContain("did not answer");
  const again = await run(["join", code, "--name", "bob", "--local", "127.0.0.1:0"], d.guestEnv);
  // Issue 12 item 8: the guest hears the one answer for any invalid code; the metric counts it as one series (issue 27).
  expect(again.err).toContain("this code is not valid");
  const m = await scrape(d, ca);
  expect(m.get('tessera_requests_total{outcome="expired"}')).toBe(1);
  expect(m.get('tessera_requests_total{outcome="approved"}')).toBe(0);
  expect(m.get('tessera_code_redemption_failures_total{reason="invalid"}')).toBe(1);
  expect(m.get("tessera_sessions_total")).toBe(0);
  host.kill("SIGINT");
  await host.exit();
});

test("the agent logs JSON lines too, and bad operations flags fail before anything listens", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const agent = spawn(
    ["agent", "--share-id", "db", "--allow", `127.0.0.1:${echo.port}`, "--log-format", "json"],
    d.hostEnv,
  );
  await agent.waitFor(/serving share db/);
  // Plain HTTP /metrics sees the agent come and go.
  expect((await scrape(d)).get("tessera_agents_connected")).toBe(1);
  agent.kill("SIGTERM");
  await agent.exit();
  await scrapeUntil(d, undefined, (m) => m.get("tessera_agents_connected") === 0);
  const lines = jsonLines(agent);
  expect(lines[0]).toMatchObject({ level: "info", tag: "agent" });
  expect(String(lines[0]!.msg)).toContain(`serving share db: 127.0.0.1:${echo.port}`);
  expect(agent.err).not.toContain("PRIVATE KEY");

  const dir = tmpDir();
  expect((await run(["ca", "--coordinator-name", "localhost", "--dir", "pki"], {}, dir)).code).toBe(0);
  const base = [
    "coordinator",
    "--certs",
    "pki",
    "--listen",
    "127.0.0.1:0",
    "--http",
    "127.0.0.1:0",
    "--audit",
    "a.jsonl",
    "--db",
    "t.db",
  ];
  const onlyCert = await run([...base, "--http-cert", "pki/coordinator.crt"], {}, dir);
  expect(onlyCert.code).toBe(1);
  expect(onlyCert.err).toContain("--http-cert and --http-key go together");
  const notPem = await run([...base, "--http-cert", "pki/ca.sha256", "--http-key", "pki/coordinator.key"], {}, dir);
  expect(notPem.err).toContain("is not a PEM certificate");
  const mismatch = await run([...base, "--http-cert", "pki/coordinator.crt", "--http-key", "pki/ca.key"], {}, dir);
  expect(mismatch.err).toContain("--http-key pki/ca.key is not the key of the certificate in pki/coordinator.crt");
  const badFormat = await run([...base, "--log-format", "xml"], {}, dir);
  expect(badFormat.err).toContain("--log-format must be one of pretty, json");
  // A fatal error in JSON mode is itself one JSON line.
  const missing = await run([...base, "--certs", "nowhere", "--log-format", "json"], {}, dir);
  expect(missing.code).toBe(1);
  const fatal = JSON.parse(missing.err.trim());
  expect(fatal).toMatchObject({ level: "fatal" });
  expect(fatal.msg).toContain("nowhere is missing ca.crt");
  // None of these ever got as far as opening the database.
  expect(fs.existsSync(path.join(dir, "t.db"))).toBe(false);
});
