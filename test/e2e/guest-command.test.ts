// `join CODE -- CMD`: the command runs against the tunnel, its exit status is tessera's, and the session
// lives exactly as long as the command (a real psql against a real PostgreSQL through the tunnel).
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import {
  agentShare,
  auditEvents,
  deploy,
  echoServer,
  killAll,
  run,
  share,
  spawn,
  type Deployment,
  type Proc,
} from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

/** An echo server shared from a PTY, and `join CODE --name NAME -- ARGV` that the host approves with y. */
async function approvedCommand(name: string, argv: string[]): Promise<{ d: Deployment; host: Proc; guest: Proc }> {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const guest = spawn(["join", code, "--name", name, "--", ...argv], d.guestEnv);
  await host.waitFor(new RegExp(`Allow ${name} to reach`));
  host.write("y\r");
  return { d, host, guest };
}

test("join -- CMD: {host}/{port} and TESSERA_HOST/PORT point at the tunnel, exit status passes through, the session ends with the command", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  // The command talks through the tunnel itself: bash's /dev/tcp sends a line and reads the echo back.
  const script =
    'exec 3<>/dev/tcp/$TESSERA_HOST/$TESSERA_PORT; echo "ping-through-tunnel" >&3; read -r line <&3; echo "args={host}:{port} env=$TESSERA_HOST:$TESSERA_PORT got=$line"; exit 7';
  // USER and LOGNAME unset: the default guest name must come from the OS account, not "guest"/"unknown".
  const guest = spawn(["join", code, "--reason", "run a script", "--", "bash", "-c", script], {
    ...d.guestEnv,
    USER: "",
    LOGNAME: "",
    USERNAME: "",
  });
  // (os.userInfo() itself is wrong here under Bun, so the expectation comes from `id -un`.)
  await host.waitFor(new RegExp(`Allow ${Bun.spawnSync(["id", "-un"]).stdout.toString().trim()} to reach`));
  host.write("y\r");
  expect(await guest.exit()).toBe(7);
  // stdout is the command's alone (it may be piped to a file); tessera's status went to stderr.
  const m = /^args=127\.0\.0\.1:(\d+) env=127\.0\.0\.1:(\d+) got=ping-through-tunnel\n$/.exec(guest.out);
  expect(m, `stdout was: ${JSON.stringify(guest.out)}\nstderr: ${guest.err}`).not.toBeNull();
  expect(m![1]).toBe(m![2]);
  expect(guest.err).toMatch(/forwarding 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+/);
  expect(guest.err).toMatch(/running bash \(pid \d+\)/);
  expect(echo.received().toString()).toBe("ping-through-tunnel\n");
  const [closed] = await auditEvents(d, "session.close");
  expect(closed!.streams).toBe(1);
  await host.waitFor(/session s-\S+ ended: the guest ended the session/);
  host.kill("SIGINT");
  await host.exit();
});

test("join -- psql: a real PostgreSQL answers a query through the tunnel", async () => {
  const url = process.env.TESSERA_TEST_PG_URL;
  if (!url) {
    console.warn(
      "SKIPPED join -- psql: TESSERA_TEST_PG_URL is not set (scripts/test-services.sh starts a PostgreSQL and sets it)",
    );
    return;
  }
  const pg = new URL(url);
  const d = await deploy();
  const host = spawn(["share", "--host", pg.hostname, "--port", pg.port || "5432"], d.hostEnv, {
    pty: true,
    cwd: d.dir,
  });
  const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]!;
  const db = decodeURIComponent(pg.pathname.slice(1)) || "postgres";
  const guest = spawn(
    [
      "join",
      code,
      "--name",
      "dba",
      "--reason",
      "check the schema",
      "--",
      "psql",
      "-h",
      "{host}",
      "-p",
      "{port}",
      "-U",
      decodeURIComponent(pg.username),
      "-d",
      db,
      "-X",
      "-A",
      "-t",
      "-v",
      "ON_ERROR_STOP=1",
      "-c",
      "select 'through-tessera:' || (6 * 7) || ':' || current_database()",
    ],
    { ...d.guestEnv, PGPASSWORD: decodeURIComponent(pg.password), PGCONNECT_TIMEOUT: "20" },
  );
  await host.waitFor(/Allow dba to reach/);
  host.write("y\r");
  const status = await guest.exit();
  expect(guest.out.trim(), guest.err).toBe(`through-tessera:42:${db}`);
  expect(status).toBe(0);
  await auditEvents(d, "session.close");
  // psql's own failure status passes through too: a failing script with ON_ERROR_STOP exits 3.
  host.write("c\r");
  const code2 = (await host.waitFor(/code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?\n[\s\S]*code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[2]!;
  const bad = spawn(
    [
      "join",
      code2,
      "--name",
      "dba2",
      "--",
      "psql",
      "-h",
      "{host}",
      "-p",
      "{port}",
      "-U",
      decodeURIComponent(pg.username),
      "-d",
      db,
      "-X",
      "-v",
      "ON_ERROR_STOP=1",
      "-f",
      "-",
    ],
    { ...d.guestEnv, PGPASSWORD: decodeURIComponent(pg.password) },
  );
  (bad.proc.stdin as import("bun").FileSink).write("select no_such_column;\n");
  (bad.proc.stdin as import("bun").FileSink).end();
  await host.waitFor(/Allow dba2 to reach/);
  host.write("y\r");
  expect(await bad.exit()).toBe(3);
  expect(bad.err).toContain("no_such_column");
  await auditEvents(d, "session.close", 2);
  host.kill("SIGINT");
  await host.exit();
});

test("the session ends first: the command is stopped and tessera exits 1 saying why", async () => {
  const { host, guest } = await approvedCommand("sleeper", ["sleep", "600"]);
  await guest.waitFor(/running sleep/);
  host.kill("SIGINT");
  expect(await guest.exit()).toBe(1);
  expect(guest.err).toMatch(/session ended: .*; stopping sleep/);
  await host.exit();
});

test("Ctrl-C is the command's to handle; SIGTERM to tessera is passed on and the command's status (143) comes back", async () => {
  const { d, host, guest } = await approvedCommand("signals", ["sleep", "600"]);
  await guest.waitFor(/running sleep/);
  // Had tessera acted on SIGINT it would have ended the session and exited 1 (or died with 130).
  guest.kill("SIGINT");
  guest.kill("SIGTERM");
  expect(await guest.exit()).toBe(128 + 15);
  expect(guest.err).not.toContain("interrupted");
  await auditEvents(d, "session.close");
  host.kill("SIGINT");
  await host.exit();
});

test("Ctrl-C at the guest's terminal goes to the command (as in psql, it cancels, it does not end the session)", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  // On SIGINT the script uses the tunnel once more: that only works if the session survived the Ctrl-C.
  const script =
    "trap 'exec 3<>/dev/tcp/$TESSERA_HOST/$TESSERA_PORT; echo after-ctrl-c >&3; read -r l <&3; echo \"echoed $l\"; exit 4' INT; echo ready; while :; do sleep 1; done";
  const guest = spawn(["join", code, "--name", "tty", "--", "bash", "-c", script], d.guestEnv, { pty: true });
  await host.waitFor(/Allow tty to reach/);
  host.write("y\r");
  await guest.waitFor(/ready/);
  guest.write("\x03");
  expect(await guest.exit()).toBe(4);
  expect(guest.out).toContain("echoed after-ctrl-c");
  expect(guest.out).not.toContain("interrupted");
  await auditEvents(d, "session.close");
  host.kill("SIGINT");
  await host.exit();
});

// A command that does not exist is refused before the host is asked: guest-first-contact.test.ts.

test("connect --share-id ... -- CMD works the same way through a running agent", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { agent, approver } = await agentShare(d, "db7", echo.port, ["--allow-requests-by-id"]);
  const guest = spawn(
    [
      "connect",
      "--share-id",
      "db7",
      "--target",
      `127.0.0.1:${echo.port}`,
      "--name",
      "conn",
      "--",
      "bash",
      "-c",
      'exec 3<>/dev/tcp/{host}/{port}; echo via-connect >&3; read -r l <&3; echo "$l"; exit 5',
    ],
    d.guestEnv,
  );
  await approver.waitFor(/Allow conn/);
  approver.write("y\n");
  expect(await guest.exit()).toBe(5);
  expect(guest.out).toBe("via-connect\n");
  await auditEvents(d, "session.close");
  for (const p of [approver, agent]) p.kill("SIGINT");
  await Promise.all([approver.exit(), agent.exit()]);
});

test("bad combinations are refused before anything is asked", async () => {
  const d = await deploy();
  const both = await run(["join", "K7QF-M2XD", "--stdio", "--", "true"], d.guestEnv);
  expect(both.code).toBe(1);
  expect(both.err).toContain("--stdio carries the stream over stdin/stdout");
  const empty = await run(["join", "K7QF-M2XD", "--"], d.guestEnv);
  expect(empty.err).toContain("nothing to run after `--`");
  const noCode = await run(["join", "--", "psql", "-h", "{host}"], d.guestEnv);
  expect(noCode.code).toBe(1);
  expect(noCode.err).toContain("give the code before `--`");
  expect(d.audit().map((e) => e.event)).not.toContain("request");
});

test("without TESSERA_HOME the binary keeps its files under $XDG_CONFIG_HOME/tessera (Linux)", async () => {
  const d = await deploy();
  const xdg = path.join(d.dir, "xdg");
  const r = await run(
    ["link", d.address, "--ca-file", "pki/ca.crt"],
    { TESSERA_HOME: "", XDG_CONFIG_HOME: xdg, HOME: path.join(d.dir, "nohome") },
    d.dir,
  );
  expect(r.code, r.err).toBe(0);
  expect(r.out).toContain(`config in ${xdg}/tessera`);
  expect(fs.existsSync(path.join(xdg, "tessera", "ca.crt"))).toBe(true);
});
