// Session rules end to end: single-use and expiring codes, sessions bound to the guest,
// operator revoke cutting live streams, and targets limited to the agent's list.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { ControlClient } from "../../src/wire/control-client.ts";
import { auditEvents, deploy, echoServer, joinApproved, killAll, run, share, spawn } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

// Issue 12 items 4 and 8 changed this test: used, expired and unknown codes now get one answer, and
// the detail reaches the audit log as one counted "refused" line per address (here written at shutdown).
test("a code works once, and a used, expired or unknown code gets one clear answer; the audit log keeps which", async () => {
  const d = await deploy(["--code-ttl", "1s"]);
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const first = spawn(["join", code, "--name", "g1", "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(/Allow g1/);
  const reuse = await run(["join", code, "--name", "g2"], d.guestEnv);
  expect(reuse.code).toBe(1);
  expect(reuse.err).toContain(
    "this code is not valid: it may be mistyped, used or expired; ask the host for a new one",
  );
  host.write("n\n");
  await first.exit();
  // Mint another, let it lapse, then try it.
  host.write("c\n");
  const next = (await host.waitFor(/code: [\s\S]*code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
  expect(next).not.toBe(code);
  await Bun.sleep(1500);
  const late = await run(["join", next, "--name", "g3"], d.guestEnv);
  expect(late.code).toBe(1);
  const wrong = await run(["join", "ZZZZ-ZZZZ"], d.guestEnv);
  const answer = (err: string) => err.split("\n").find((l) => l.includes("not valid"));
  expect(answer(late.err)).toBe(answer(reuse.err));
  expect(answer(wrong.err)).toBe(answer(reuse.err));
  const junk = await run(["join", "hello"], d.guestEnv);
  expect(junk.err).toContain("that is not a tessera code");
  host.kill("SIGINT");
  await host.exit();
  d.coordinator.kill("SIGTERM");
  await d.coordinator.exit();
  const refused = d.audit().filter((e) => e.event === "refused");
  expect(refused).toHaveLength(1);
  // Since issue 14 the guest checks a code's form itself (it must split it), so junk never reaches the coordinator.
  expect(refused[0]).toMatchObject({ addr: "127.0.0.1", attempts: 3 });
  expect(String(refused[0]!.reasons).split(" ").sort()).toEqual([
    "redeem.expired=1",
    "redeem.unknown=1",
    "redeem.used=1",
  ]);
});

test("redemption attempts are rate-limited per address", async () => {
  const d = await deploy();
  let last = "";
  for (let i = 0; i < 11; i++) last = (await run(["join", `ZZZZ-ZZZ${i % 10}`], d.guestEnv)).err;
  expect(last).toContain("too many attempts");
});

test("a second guest holding the first guest's session id gets nothing", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { guest } = await joinApproved(d, host, code, "first");
  const sessionId = d.audit().find((e) => e.event === "session.open")!.sessionId as string;
  const intruder = await ControlClient.dial({
    address: d.address,
    caPem: fs.readFileSync(path.join(d.dir, "pki/ca.crt"), "utf8"),
    version: "test",
  });
  intruder.send({ t: "open", sessionId, ref: "x1" });
  const refused = await new Promise<{ code: string; message: string }>((resolve) => intruder.on("error", resolve));
  expect(refused.code).toBe("no_session");
  expect(refused.message).toContain(`no session "${sessionId}" belongs to this guest`);
  expect(d.audit().filter((e) => e.event === "stream.open").length).toBe(0);
  intruder.close();
  guest.kill("SIGINT");
  host.kill("SIGINT");
  await Promise.all([guest.exit(), host.exit()]);
});

test("operator revoke cuts a live stream at once and ends the guest", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { guest, local } = await joinApproved(d, host, code, "eve");
  const sock = net.connect({ port: local, host: "127.0.0.1" });
  sock.write("still here?");
  await new Promise((r) => sock.once("data", r));
  const closed = new Promise((r) => sock.once("close", r));
  const sessionId = d.audit().find((e) => e.event === "session.open")!.sessionId as string;
  const opEnv = { TESSERA_HOME: path.join(d.dir, "operator"), TESSERA_COORDINATOR: d.address };
  const url = `http://127.0.0.1:${d.httpPort}`;
  expect((await run(["revoke", sessionId, "--url", url], opEnv)).err).toContain("no operator token on this machine");
  const tok = await run(["token", fs.readFileSync(path.join(d.dir, "pki/operator-token"), "utf8").trim()], opEnv);
  expect(tok.code).toBe(0);
  expect(fs.statSync(path.join(d.dir, "operator/operator-token")).mode & 0o777).toBe(0o600);
  // The token never goes over plain HTTP to another machine: refused before anything is sent.
  const clear = await run(["revoke", sessionId, "--url", "http://coordinator.example:8080"], opEnv);
  expect(clear.code).toBe(1);
  expect(clear.err).toContain("refusing to send the operator token over plain HTTP");
  const r = await run(["revoke", sessionId, "--url", url], opEnv);
  expect(r.code).toBe(0);
  await closed;
  expect(await guest.exit()).toBe(1);
  expect(guest.err).toContain("revoked by the operator");
  const events = d.audit().map((e) => e.event);
  expect(events.indexOf("revoke")).toBeLessThan(events.lastIndexOf("session.close"));
  expect(d.audit().find((e) => e.event === "stream.close")!.reason).toBe("revoked by the operator");
  // A wrong token is refused and the endpoint says why.
  const bad = await fetch(`${url}/s/${sessionId}/revoke`, {
    method: "POST",
    headers: { authorization: "Bearer nope" },
  });
  expect(bad.status).toBe(401);
  host.kill("SIGINT");
  await host.exit();
});

test("revoke is disabled with a clear 403 when no operator token is configured", async () => {
  const d = await deploy();
  d.coordinator.kill("SIGTERM");
  await d.coordinator.exit();
  fs.rmSync(path.join(d.dir, "pki/operator-token"));
  const c = spawn(
    ["coordinator", "--certs", "pki", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", "tessera.db"],
    {},
    { cwd: d.dir },
  );
  const http = Number((await c.waitFor(/http 127\.0\.0\.1:(\d+)/))[1]);
  expect(await (await fetch(`http://127.0.0.1:${http}/healthz`)).text()).toMatch(/^ok v\d+\.\d+\.\d+/);
  const res = await fetch(`http://127.0.0.1:${http}/s/s-x/revoke`, {
    method: "POST",
    headers: { authorization: "Bearer x" },
  });
  expect(res.status).toBe(403);
  expect(await res.text()).toContain(
    "operator endpoints (revoke, admin) are disabled: this coordinator has no operator token",
  );
});

test("an agent serves only its --allow list; other targets are refused", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const other = await echoServer();
  const agent = spawn(
    ["agent", "--share-id", "db1", "--allow", `127.0.0.1:${echo.port}`, "--allow-requests-by-id"],
    d.hostEnv,
  );
  await agent.waitFor(/serving share db1/);
  const approver = spawn(["share", "--share-id", "db1"], d.hostEnv);
  await approver.waitFor(/code: /);
  const off = await run(
    ["connect", "--share-id", "db1", "--target", `127.0.0.1:${other.port}`, "--name", "x"],
    d.guestEnv,
  );
  expect(off.code).toBe(1);
  expect(off.err).toContain(`does not offer 127.0.0.1:${other.port}`);
  const on = spawn(
    ["connect", "--share-id", "db1", "--target", `127.0.0.1:${echo.port}`, "--name", "y", "--local", "127.0.0.1:0"],
    d.guestEnv,
  );
  await approver.waitFor(/Allow y/);
  approver.write("y\n");
  const local = Number((await on.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  const { roundTrip } = await import("./harness.ts");
  expect((await roundTrip(local, Buffer.from("via agent"))).toString()).toBe("via agent");
  expect(other.received().length).toBe(0);
  for (const p of [on, approver, agent]) p.kill("SIGINT");
  await Promise.all([on.exit(), approver.exit(), agent.exit()]);
});

test("a machine without a host certificate cannot serve a share", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const agent = spawn(["agent", "--share-id", "mine", "--allow", `127.0.0.1:${echo.port}`], d.hostEnv);
  await agent.waitFor(/serving share mine/);
  // A guest-only machine has no host certificate.
  const r = await run(["agent", "--share-id", "mine", "--allow", `127.0.0.1:${echo.port}`], d.guestEnv);
  expect(r.code).toBe(1);
  expect(r.err).toContain("not enrolled as a host");
  agent.kill("SIGINT");
  await agent.exit();
});

test("a session with no traffic ends after the idle timeout", async () => {
  const d = await deploy(["--idle-timeout", "1s"]);
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { guest } = await joinApproved(d, host, code, "idle");
  expect(await guest.exit()).toBe(1);
  expect(guest.err).toContain("idle for 1s");
  expect(d.audit().map((e) => e.event)).toContain("session.idle");
  host.kill("SIGINT");
  await host.exit();
});

test("the agent's own policy refusing a stream ends it at once, with the agent's reason in the audit log", async () => {
  const d = await deploy();
  // A cloud-metadata name: the coordinator passes it (it is the share's own target), the agent's policy refuses it.
  const host = spawn(["share", "--host", "metadata", "--port", "80"], d.hostEnv);
  const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})$/m))[1]!;
  const { guest, local } = await joinApproved(d, host, code, "ann");
  const closed = await new Promise<string>((resolve) => {
    const s = net.connect({ port: local, host: "127.0.0.1" }, () => s.write("GET / HTTP/1.0\r\n\r\n"));
    s.on("error", () => {});
    s.on("close", () => resolve("closed"));
  });
  expect(closed).toBe("closed");
  const [line] = await auditEvents(d, "stream.close");
  expect(String(line!.reason)).toMatch(/^the host refused the stream: target metadata:80 is a cloud metadata name/);
  await host.waitFor(/refused stream to metadata:80/);
  guest.kill("SIGINT");
  await guest.exit();
});
