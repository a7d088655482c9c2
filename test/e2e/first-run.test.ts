// An operator's first run is one command: `tessera coordinator --init` in an empty directory prints the host's
// and the guest's lines, and those lines, run as printed, are all a join needs. Clients wait for a starting one.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { echoServer, killAll, roundTrip, run, spawn, spawnArgv, TESSERA, tmpDir } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

const LISTENING = /listening on 127\.0\.0\.1:(\d+) \(https? 127\.0\.0\.1:(\d+)\)/;

/** Runs a printed `tessera ...` line as it is, with `tessera` being the binary under test. */
function runPrinted(line: string, env: Record<string, string>, cwd: string) {
  const p = spawnArgv(["bash", "-c", `exec ${line.replace(/^tessera /, `${TESSERA.join(" ")} `)}`], env, { cwd });
  return p.exit().then((code) => ({ code, out: p.out, err: p.err }));
}

test("coordinator --init: the printed host and guest lines, as printed, then share, join, y and bytes through", async () => {
  const dir = tmpDir();
  const coordinator = spawn(
    ["coordinator", "--init", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
    {},
    {
      cwd: dir,
    },
  );
  await coordinator.waitFor(LISTENING);
  // Into a pipe (not a terminal) the token stays in its file: the line names the file.
  const hostLine = (await coordinator.waitFor(/^ {2}host: {2}(tessera link \S+ --token-file \S+)$/m))[1]!;
  const guestLine = (await coordinator.waitFor(/^ {2}guest: (tessera link \S+ --ca-pin sha256:[0-9a-f]{64})$/m))[1]!;
  // The certificate names localhost, so a loopback listener is handed out as localhost.
  expect(hostLine).toMatch(/^tessera link localhost:\d+ /);
  expect(fs.statSync(path.join(dir, "pki/ca.key")).mode & 0o777).toBe(0o600);
  // The enrolment token is a secret: shown only on a terminal (the Quickstart's test sees that), never in a pipe or the log.
  const token = fs.readFileSync(path.join(dir, "pki/enroll-token"), "utf8").trim();
  expect(coordinator.all).not.toContain(token);
  const hostEnv = { TESSERA_HOME: path.join(dir, "host") };
  const guestEnv = { TESSERA_HOME: path.join(dir, "guest") };
  const enrolled = await runPrinted(hostLine, hostEnv, dir);
  expect(enrolled.code, enrolled.err).toBe(0);
  const trusted = await runPrinted(guestLine, guestEnv, dir);
  expect(trusted.code, trusted.err).toBe(0);
  const target = await echoServer();
  const host = spawn(["share", "--port", String(target.port)], hostEnv, { pty: true, cwd: dir });
  const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]!;
  const guest = spawn(["join", code, "--reason", "first run", "--local", "127.0.0.1:0"], guestEnv, { cwd: dir });
  await host.waitFor(/\[y\/N\]/);
  host.write("y\r");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  expect((await roundTrip(local, Buffer.from("hello"))).toString()).toBe("hello");
});

test("--init never overwrites a CA; an explicit --certs without one names --init rather than minting a CA", async () => {
  const dir = tmpDir();
  const first = spawn(["coordinator", "--init", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"], {}, { cwd: dir });
  await first.waitFor(/guest: tessera link/);
  first.kill("SIGTERM");
  await first.exit();
  const pin = fs.readFileSync(path.join(dir, "pki/ca.sha256"), "utf8");
  const again = spawn(["coordinator", "--init", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"], {}, { cwd: dir });
  await again.waitFor(LISTENING);
  expect(again.all).toContain("pki already holds a CA: keeping it (--init never overwrites one)");
  expect(again.out).not.toContain("--token");
  expect(fs.readFileSync(path.join(dir, "pki/ca.sha256"), "utf8")).toBe(pin);
  again.kill("SIGTERM");
  await again.exit();
  const typo = await run(
    ["coordinator", "--certs", "pkj", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
    {},
    dir,
  );
  expect(typo.code).toBe(1);
  expect(typo.err).toContain("pkj is missing ca.crt: add --init to create a new CA there");
  expect(fs.existsSync(path.join(dir, "pkj"))).toBe(false);
});

test("--name sets the certificate's names: a host dials the name given, and the printed line uses it", async () => {
  const dir = tmpDir();
  const c = spawn(
    ["coordinator", "--init", "--name", "127.0.0.1", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
    {},
    { cwd: dir },
  );
  const line = (await c.waitFor(/^ {2}host: {2}(tessera link \S+ --token-file \S+)$/m))[1]!;
  expect(line).toMatch(/^tessera link 127\.0\.0\.1:\d+ /);
  const enrolled = await runPrinted(line, { TESSERA_HOME: path.join(dir, "host") }, dir);
  expect(enrolled.code, enrolled.err).toBe(0);
});

test("link waits for a coordinator that is starting: one waiting line, then it links once the port opens", async () => {
  const dir = tmpDir();
  // A free port, known before the coordinator takes it.
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const link = spawn(
    ["link", `localhost:${port}`, "--token-file", "pki/enroll-token"],
    {
      TESSERA_HOME: path.join(dir, "host"),
    },
    { cwd: dir },
  );
  await link.waitFor(new RegExp(`waiting for the coordinator at localhost:${port} \\(nothing answers yet`));
  const c = spawn(
    ["coordinator", "--init", "--listen", `127.0.0.1:${port}`, "--http", "127.0.0.1:0"],
    {},
    {
      cwd: dir,
    },
  );
  await c.waitFor(LISTENING);
  expect(await link.exit()).toBe(0);
  expect(link.out).toContain("enrolled as host");
});

test("a coordinator that never comes: the waiting line, then the error that says what is wrong", async () => {
  const dir = tmpDir();
  const r = await run(["link", "localhost:1", "--yes"], { TESSERA_HOME: path.join(dir, "g") }, dir);
  expect(r.code).toBe(1);
  expect(r.err).toContain("waiting for the coordinator at localhost:1");
  expect(r.err).toContain(
    "cannot reach the coordinator at localhost:1: connection refused (is the coordinator running?)",
  );
});

test("plain `tessera coordinator` on a machine with no PKI (the default pki/) makes one, as --init does", async () => {
  const dir = tmpDir();
  const c = spawn(["coordinator", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"], {}, { cwd: dir });
  await c.waitFor(/^ {2}guest: tessera link localhost:\d+ --ca-pin sha256:[0-9a-f]{64}$/m);
  expect(fs.existsSync(path.join(dir, "pki/ca.key"))).toBe(true);
});
