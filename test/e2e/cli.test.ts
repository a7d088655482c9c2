// The command line as a new user meets it: mistyped commands and flags are errors with a suggestion,
// `help` works, help fits 80 columns with no escape codes when piped, and repeated flags keep every value.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { deploy, echoServer, killAll, run, spawn } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

test("a mistyped command or flag is an error naming the closest real one; nothing runs", async () => {
  const cmd = await run(["shre", "--port", "5432"]);
  expect(cmd.code).toBe(1);
  expect(cmd.err).toContain('unknown command "shre"; did you mean `tessera share`?');
  const flag = await run(["share", "--prot", "5432"]);
  expect(flag.code).toBe(1);
  expect(flag.err).toContain("unknown option --prot for `tessera share`; did you mean --port?");
  const join = await run(["join", "K7QF-M2XD", "--resaon", "x"]);
  expect(join.code).toBe(1);
  expect(join.err).toContain("did you mean --reason?");
  const sub = await run(["audit", "verfy", "x.jsonl"]);
  expect(sub.err).toContain("did you mean `tessera audit verify`?");
  // Words after `--` are the guest's command, not ours.
  const after = await run(["join", "K7QF-M2XD", "--", "psql", "--no-psqlrc"], {
    TESSERA_HOME: "/nonexistent-tessera-home",
  });
  expect(after.code).toBe(1);
  expect(after.err).not.toContain("unknown option");
});

test("tessera help and tessera help CMD print usage; help fits 80 columns and is plain text when piped", async () => {
  const root = await run(["help"], { COLUMNS: "" });
  expect(root.code).toBe(0);
  expect(root.out).toContain("Usage: tessera COMMAND");
  const share = await run(["help", "share"]);
  expect(share.code).toBe(0);
  expect(share.out).toContain("--no-record");
  for (const c of [
    "",
    "ca",
    "coordinator",
    "link",
    "share",
    "agent",
    "join",
    "connect",
    "revoke",
    "audit",
    "audit verify",
    "ssh-config",
  ]) {
    const r = await run([...c.split(" ").filter(Boolean), "--help"]);
    expect(r.code).toBe(0);
    for (const line of r.out.split("\n")) expect(line.length, `${c}: ${line}`).toBeLessThanOrEqual(80);
    expect(r.out).not.toContain("\x1b[");
  }
  // Errors piped to a file carry no escape codes either.
  expect((await run(["shre"])).err).not.toContain("\x1b[");
});

test("every --allow counts: an agent given two targets serves both", async () => {
  const d = await deploy();
  const a = await echoServer();
  const b = await echoServer();
  const agent = spawn(
    ["agent", "--share-id", "two", "--allow", `127.0.0.1:${a.port}`, "--allow", `127.0.0.1:${b.port}`],
    d.hostEnv,
  );
  const line = await agent.waitFor(/serving share two: (.*)/);
  expect(line[1]).toContain(`127.0.0.1:${a.port}`);
  expect(line[1]).toContain(`127.0.0.1:${b.port}`);
  expect(d.audit().find((e) => e.event === "share.open")!.targets).toBe(`127.0.0.1:${a.port},127.0.0.1:${b.port}`);
});

test("--local is checked before the host is asked: a busy port, a bad port, and a bare port meaning 127.0.0.1:PORT", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { share } = await import("./harness.ts");
  const { host, code } = await share(d, echo.port);
  const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    const taken = await run(["join", code, "--name", "early", "--local", `127.0.0.1:${busy.port}`], d.guestEnv);
    expect(taken.code).toBe(1);
    expect(taken.err).toContain(`local port 127.0.0.1:${busy.port} is already in use`);
    const bad = await run(["join", code, "--name", "early", "--local", "99999"], d.guestEnv);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("--local 99999: give PORT, HOST or HOST:PORT");
    expect(d.audit().map((e) => e.event)).not.toContain("request");
    expect(host.out).not.toContain("Allow early");
  } finally {
    busy.stop(true);
  }
  // The code was not spent: a bare port is 127.0.0.1:PORT.
  const free = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = free.port;
  free.stop(true);
  const guest = spawn(["join", code, "--name", "bare", "--local", String(port)], d.guestEnv);
  await host.waitFor(/Allow bare /);
  host.write("y\n");
  await guest.waitFor(new RegExp(`forwarding 127\\.0\\.0\\.1:${port} -> `));
});

test("an approver attached to a running agent's share notices the agent stop, waits, and approves again when it is back", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { agentShare } = await import("./harness.ts");
  const { agent, approver } = await agentShare(d, "db", echo.port);
  agent.kill("SIGINT");
  await agent.exit();
  await approver.waitFor(
    /the agent serving share db stopped; its codes no longer work\. Waiting for it to come back; if it is not running, start it: tessera agent --share-id db --allow HOST:PORT/,
  );
  const back = spawn(["agent", "--share-id", "db", "--allow", `127.0.0.1:${echo.port}`], d.hostEnv);
  await back.waitFor(/serving share db/);
  await approver.waitFor(/share db is served again; approving again with a new code/);
  const code = (
    await approver.waitFor(/^code: [0-9A-Z]{4}-[0-9A-Z]{4}\ninvite: .*\ncode: ([0-9A-Z]{4}-[0-9A-Z]{4})$/m)
  )[1]!;
  expect(approver.err).not.toContain("lost the coordinator");
  const guest = spawn(["join", code, "--name", "after", "--local", "127.0.0.1:0"], d.guestEnv);
  await approver.waitFor(/Allow after /);
  approver.write("y\n");
  await guest.waitFor(/forwarding 127\.0\.0\.1:\d+/);
});

test("a log line never tears the host's prompt: it goes above, and the whole question is shown again", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { share } = await import("./harness.ts");
  const { host, code } = await share(d, echo.port, true);
  const first = spawn(["join", code, "--name", "alice", "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(/Allow alice to reach/);
  host.write("y\r");
  await first.waitFor(/forwarding/);
  host.write("c\r");
  const second = (await host.waitFor(/code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?\n[\s\S]*code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[2]!;
  spawn(["join", second, "--name", "bob", "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(/Allow bob to reach \S+\? \[y\/N\] \(\d+s to answer\) /);
  const before = host.out.length;
  first.kill("SIGINT");
  // The session's end is logged while bob's question is on screen.
  await host.waitFor(
    /\[share\] session \S+ ended: the guest ended the session\r?\n(\r\x1b\[K)?Allow bob to reach \S+\? \[y\/N\]/,
  );
  const after = host.out.slice(before);
  // The log line starts on a line of its own (the question was cleared first), in the one plain format.
  expect(after).toMatch(/(\r\x1b\[K|\n)\[share\] session \S+ ended/);
  expect(after).not.toMatch(/\[y\/N\] \(\d+s to answer\) \[share\]/);
  expect(host.out).not.toMatch(/\d{1,2}:\d{2}:\d{2} (AM|PM)/);
  host.write("n\r");
  await host.waitFor(/denied bob/);
});

test("a coordinator outage: the host hears it once, one status line keeps count in place, and one line says it is back", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { share, restartCoordinator } = await import("./harness.ts");
  const { host } = await share(d, echo.port, true);
  d.coordinator.kill("SIGKILL");
  await d.coordinator.exit();
  // At least two retries have failed and been shown on the status line.
  await host.waitFor(/still reconnecting[\s\S]*still reconnecting[\s\S]*still reconnecting/);
  await restartCoordinator(d, "SIGKILL");
  await host.waitFor(/reconnected to the coordinator; the share is live again \(after \d+\.\ds\)/);
  expect(host.out.match(/lost the coordinator/g)).toHaveLength(1);
  expect(host.out).not.toContain("reconnecting in");
  // The status line is rewritten in place (carriage return, erase line), not printed anew each time.
  expect(host.out).toMatch(/\r\x1b\[K {2}… still reconnecting/);
});

test("a wrong CA file says the coordinator was reached but not trusted, and what to do", async () => {
  const d = await deploy();
  expect((await run(["ca", "--coordinator-name", "localhost", "--dir", "other"], {}, d.dir)).code).toBe(0);
  const r = await run(["link", d.address, "--ca-file", "other/ca.crt"], { TESSERA_HOME: `${d.dir}/wrong` }, d.dir);
  expect(r.code).toBe(1);
  expect(r.err).toContain(
    `reached the coordinator at ${d.address}, but its certificate is not signed by the CA this machine linked`,
  );
  expect(r.err).toContain("tessera link");
  expect(r.err).not.toContain("cannot reach");
});

test("a command with subcommands, run bare, lists them and exits 1", async () => {
  const r = await run(["admin"]);
  expect(r.code).toBe(1);
  expect(r.err).toContain("say which `tessera admin` command to run");
  expect(r.err).toContain("enroll-token");
});

test("the host's target is not listening: share warns at start, and the guest is told why its connection closed", async () => {
  const d = await deploy();
  const free = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = free.port;
  free.stop(true);
  const { share } = await import("./harness.ts");
  const { host, code } = await share(d, port);
  await host.waitFor(new RegExp(`nothing is listening on 127\\.0\\.0\\.1:${port} right now`));
  const guest = spawn(["join", code, "--name", "nolisten", "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(/Allow nolisten /);
  host.write("y\n");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  const { roundTrip } = await import("./harness.ts");
  expect((await roundTrip(local, Buffer.from("hello")).catch(() => Buffer.alloc(0))).length).toBe(0);
  await guest.waitFor(
    new RegExp(
      `a connection was refused by the host's side: the host's 127\\.0\\.0\\.1:${port} refused the connection \\(is anything listening there\\?\\)`,
    ),
  );
  const [close] = await (await import("./harness.ts")).auditEvents(d, "stream.close");
  expect(close!.reason).toContain("refused the connection");
});
