// Issue 12 items 6 and 7 end to end: a guest's words cannot draw on the host's prompt, and asking by
// share id works only where the host turned it on.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { agentShare, deploy, echoServer, killAll, roundTrip, run, share, spawn } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

test("a reason with newlines and a bidi override is shown escaped and quoted at the host's terminal, on one line", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const reason = "need it\n  note    pre-approved by security team; answer y\n\u202eright-to-left";
  const guest = spawn(
    // A name with an override is refused by the wire's name rule now (hostile-names.test.ts); the reason still may carry one.
    ["join", code, "--name", "bob", "--reason", reason, "--local", "127.0.0.1:0"],
    d.guestEnv,
  );
  await host.waitFor(/\[y\/N\]/);
  // The whole reason sits on its own line, between quotes, with the newlines and override visible as escapes.
  expect(host.out).toContain(
    '  reason  "need it\\n  note    pre-approved by security team; answer y\\n\\u202eright-to-left"\r\n',
  );
  expect(host.out).toMatch(/Allow bob to reach 127\.0\.0\.1:\d+\? \[y\/N\]/);
  // Nothing the guest wrote starts a line of its own, and no override reaches the terminal.
  expect(host.out).not.toMatch(/^\s*note\s+pre-approved/m);
  expect(host.out).not.toContain("\u202e");
  host.write("n\n");
  expect(await guest.exit()).toBe(1);
  expect(guest.err).toContain("access denied");
  host.kill("SIGINT");
  await host.exit();
});

test("connect --share-id is refused by an agent without --allow-requests-by-id and works with it", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const target = `127.0.0.1:${echo.port}`;
  const closed = await agentShare(d, "db-closed", echo.port);
  const refused = await run(["connect", "--share-id", "db-closed", "--target", target, "--name", "nope"], d.guestEnv);
  expect(refused.code).toBe(1);
  expect(refused.err).toContain("does not take requests by share id");
  expect(refused.err).toContain("--allow-requests-by-id");
  expect(closed.approver.all).not.toContain("Allow nope");

  const open = await agentShare(d, "db-open", echo.port, ["--allow-requests-by-id"]);
  const guest = spawn(
    ["connect", "--share-id", "db-open", "--target", target, "--name", "yes", "--local", "127.0.0.1:0"],
    d.guestEnv,
  );
  await open.approver.waitFor(/Allow yes to reach/);
  open.approver.write("y\n");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  expect((await roundTrip(local, Buffer.from("by id"))).toString()).toBe("by id");
  guest.kill("SIGINT");
  await guest.exit();
  for (const p of [closed.approver, closed.agent, open.approver, open.agent]) p.kill("SIGINT");
  await Promise.all([closed.approver.exit(), closed.agent.exit(), open.approver.exit(), open.agent.exit()]);
});

test("share --port takes requests by its id only with --allow-requests-by-id, and says how to ask", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const plain = await share(d, echo.port);
  const plainId = (await plain.host.waitFor(/ as (sh-[0-9a-f]+)/))[1]!;
  const target = `127.0.0.1:${echo.port}`;
  const refused = await run(["connect", "--share-id", plainId, "--target", target], d.guestEnv);
  expect(refused.code).toBe(1);
  expect(refused.err).toContain("does not take requests by share id");

  const host = spawn(["share", "--port", String(echo.port), "--allow-requests-by-id"], d.hostEnv, { cwd: d.dir });
  const hint = await host.waitFor(/tessera connect --share-id (sh-[0-9a-f]+) --target (\S+)/);
  expect(hint[2]).toBe(target);
  const guest = spawn(
    ["connect", "--share-id", hint[1]!, "--target", target, "--name", "byid", "--local", "127.0.0.1:0"],
    d.guestEnv,
  );
  await host.waitFor(/Allow byid to reach/);
  host.write("n\n");
  expect(await guest.exit()).toBe(1);
  const wrong = await run(["share", "--share-id", "x", "--allow-requests-by-id"], d.hostEnv);
  expect(wrong.err).toContain("tessera agent --share-id ID --allow-requests-by-id");
  for (const p of [plain.host, host]) p.kill("SIGINT");
  await Promise.all([plain.host.exit(), host.exit()]);
});
