// The guest's first contact, run as a guest runs it: what can be checked before the host is asked is checked
// (a missing command, a shell asked for with --local), "waiting for the host" only once there is a host
// asking, and a cancel says what it cost while the host sees the withdrawal.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { deploy, echoServer, killAll, run, share, shareShell, spawn } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

test("join -- CMD whose command does not exist: 127 before anything is sent, and the code still works", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const r = await run(["join", code, "--reason", "x", "--", "no-such-client-xyz", "{port}"], d.guestEnv);
  expect(r.code).toBe(127);
  expect(r.err).toContain("no-such-client-xyz: command not found");
  expect(r.err).toContain("the code is still good");
  // The code was never sent: a real join with it reaches the host's prompt.
  const guest = spawn(["join", code, "--name", "second", "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(/Allow second /);
  host.write("y\r");
  await guest.waitFor(/forwarding/);
  expect(host.all).not.toMatch(/no-such-client/);
});

test("join --local against a shell share is refused before the host is asked, in words naming the fix", async () => {
  const d = await deploy();
  const { host, code } = await shareShell(d, ["--command", "sh", "--no-record"], { env: { PS1: "tsh$ ", ENV: "" } });
  const r = await run(["join", code, "--name", "porty", "--local", "127.0.0.1:0"], d.guestEnv);
  expect(r.code).toBe(1);
  expect(r.err).toContain("this share is a shell: join it without --local, --stdio or `-- COMMAND`");
  expect(r.err).toContain("the host was not asked");
  expect(r.err).not.toContain("waiting for the host");
  // The host was not shown a request to answer (any notice it got is not a question).
  expect(host.all).not.toContain("Allow porty");
});

test("a cancel says the code is used up; the host sees the request withdrawn; 'waiting' only after the code checked out", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const guest = spawn(["join", code, "--name", "quitter", "--local", "127.0.0.1:0"], d.guestEnv);
  const order = await guest.waitFor(/the host proved it made this code[\s\S]*waiting for the host to approve/);
  expect(order).toBeTruthy();
  await host.waitFor(/Allow quitter /);
  guest.kill("SIGINT");
  expect(await guest.exit()).toBe(1);
  expect(guest.err).toContain("before the host answered; the code is used up: ask the host for a new one");
  await host.waitFor(/request \S+ is no longer waiting/);
  // A code that names no share: no host, so no "waiting for the host".
  const wrong = await run(["join", "ZZZZ-ZZZZ", "--name", "lost"], d.guestEnv);
  expect(wrong.code).toBe(1);
  expect(wrong.err).not.toContain("waiting for the host");
});

test("a join that goes direct says its path once: no 'through the coordinator' line before the direct one", async () => {
  const { roundTrip } = await import("./harness.ts");
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const guest = spawn(["join", code, "--name", "direct", "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(/Allow direct /);
  host.write("y\r");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  // A connection at once: it may take a relay spare while the direct path is still being tried.
  expect((await roundTrip(local, Buffer.from("first"))).toString()).toBe("first");
  await guest.waitFor(/path: direct to the host/);
  expect(guest.err.match(/path: /g)).toHaveLength(1);
  expect(guest.err).not.toContain("path: through the coordinator");
});
