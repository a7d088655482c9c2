// The README quickstart for real: host answers through a PTY, guest forwards, bytes arrive intact.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { deploy, echoServer, joinApproved, killAll, roundTrip, share, spawn } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

test("quickstart: code, prompt at the host's terminal, y, forwarding with many parallel byte-exact streams", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const guest = spawn(
    [
      "join",
      code.toLowerCase().replace("-", ""),
      "--reason",
      "debug the checkout query",
      "--name",
      "alice",
      "--local",
      "127.0.0.1:0",
    ],
    d.guestEnv,
  );
  // The prompt names who, from where, what, why and the key.
  const prompt = await host.waitFor(/Allow alice to reach 127\.0\.0\.1:\d+\? \[y\/N\]/);
  expect(prompt[0]).toContain(`127.0.0.1:${echo.port}`);
  expect(host.out).toContain("guest   alice");
  expect(host.out).toMatch(/from {4}127\.0\.0\.1:\d+/);
  expect(host.out).toContain('reason  "debug the checkout query"');
  expect(host.out).toMatch(/key {5}SHA256:[A-Za-z0-9+/]{43}/);
  host.write("y\r");
  const fwd = await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:(\d+)/);
  expect(Number(fwd[2])).toBe(echo.port);
  const local = Number(fwd[1]);

  // 24 connections at once, each with its own random payload, half-closed by the client.
  const payloads = Array.from({ length: 24 }, (_, i) => randomBytes(64 * 1024 + i * 4099));
  const echoed = await Promise.all(payloads.map((p) => roundTrip(local, p)));
  for (const [i, e] of echoed.entries()) expect(e.equals(payloads[i]!)).toBe(true);

  const events = d.audit().map((e) => e.event);
  for (const e of ["share.open", "code.mint", "request", "approve", "session.open", "stream.open"])
    expect(events).toContain(e);
  // The client sees its echo a moment before the coordinator has seen both sockets close.
  while (d.audit().filter((e) => e.event === "stream.close").length < 24) await Bun.sleep(20);
  const closes = d.audit().filter((e) => e.event === "stream.close");
  expect(closes.length).toBe(24);
  const up = closes.reduce((n, e) => n + Number(e.bytesUp), 0);
  // Every payload byte was counted: by the coordinator on the relay (plus TLS overhead), or exactly by
  // the agent's report on the direct path (streams opened once the agent proved the guest's hint).
  expect(up).toBeGreaterThanOrEqual(payloads.reduce((n, p) => n + p.length, 0));
  // No secret reaches the audit log: not the code, not a token, not a key.
  const text = JSON.stringify(d.audit());
  expect(text).not.toContain(code);
  expect(text).not.toContain("PRIVATE KEY");

  // Ctrl-C on the guest ends the session for everyone.
  guest.kill("SIGINT");
  expect(await guest.exit()).toBe(0);
  await host.waitFor(/session s-\S+ ended: the guest ended the session/);
  const sessionClose = d.audit().find((e) => e.event === "session.close")!;
  expect(sessionClose.streams).toBe(24);
  expect(Number(sessionClose.bytesUp)).toBe(up);
  host.kill("SIGINT");
  expect(await host.exit()).toBe(0);
});

test("the host says n: the guest exits non-zero with a clear message", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const guest = spawn(["join", code, "--reason", "please", "--name", "mallory"], d.guestEnv);
  await host.waitFor(/Allow mallory to reach/);
  host.write("n\r");
  expect(await guest.exit()).not.toBe(0);
  expect(guest.err).toContain("access denied: the host declined the request");
  expect(d.audit().map((e) => e.event)).toContain("deny");
  host.kill("SIGINT");
  await host.exit();
});

test("no answer within the approval timeout denies the request", async () => {
  const d = await deploy(["--approval-timeout", "1s"]);
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const guest = spawn(["join", code, "--name", "bob"], d.guestEnv);
  expect(await guest.exit()).not.toBe(0);
  expect(guest.err).toContain("the host did not answer within 1s");
  await host.waitFor(/no longer waiting: the host did not answer/);
  expect(d.audit().map((e) => e.event)).toContain("request.expire");
  host.kill("SIGINT");
  await host.exit();
});

test("Ctrl-C on the host closes the guest's live stream and ends its session", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { guest, local } = await joinApproved(d, host, code, "carol");
  const net = await import("node:net");
  const sock = net.connect({ port: local, host: "127.0.0.1" });
  sock.write("ping");
  await new Promise((r) => sock.once("data", r));
  const closed = new Promise((r) => sock.once("close", r));
  host.kill("SIGINT");
  await closed;
  expect(await guest.exit()).not.toBe(0);
  expect(guest.err).toMatch(/session ended: the host('s agent disconnected| stopped sharing)/);
  expect(await host.exit()).toBe(0);
});
