// Issue 14 end to end: the invite line joins from a fresh TESSERA_HOME (no link), --verify shows one string on
// both sides, a request by share id says nobody but the coordinator vouches, and a wrong code burns the code.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { agentShare, deploy, echoServer, killAll, roundTrip, share, spawn, tmpDir } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

test("a fresh TESSERA_HOME joins with the invite line; --verify prints the same string to host and guest", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const host = spawn(["share", "--port", String(echo.port), "--verify"], d.hostEnv, { pty: true, cwd: d.dir });
  const invite = (await host.waitFor(/^invite: (tessera join (\S+))\r?$/m))[2]!;
  expect(invite).toMatch(new RegExp(`^${d.address}/[0-9A-Z]{4}-[0-9A-Z]{4}$`));
  const fresh = { TESSERA_HOME: path.join(tmpDir(), "never-linked") };
  const guest = spawn(
    ["join", invite, "--name", "ana", "--reason", "help", "--local", "127.0.0.1:0", "--verify"],
    fresh,
  );
  await guest.waitFor(/is new to this machine: its CA is sha256:[0-9a-f]{64}, kept in/);
  const gv = (await guest.waitFor(/verify: ([0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4})/))[1];
  await host.waitFor(/Allow ana to reach/);
  expect(host.out).toContain("this guest holds the code you gave out");
  expect(host.out).toContain(`verify  ${gv}`);
  host.write("y\r");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  const payload = Buffer.from("pinned by the code\n");
  expect((await roundTrip(local, payload)).equals(payload)).toBe(true);
  expect(fs.readdirSync(path.join(fresh.TESSERA_HOME, "coordinators"))).toHaveLength(1);
  guest.kill("SIGINT");
  await guest.exit();
  host.kill("SIGINT");
  await host.exit();
});

test("right nameplate, wrong secret: the guest hears the code did not match, the host only a wrong-code line; the code is burnt", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const wrong = `${code.slice(0, 5)}${code.slice(5) === "0000" ? "0001" : "0000"}`;
  const bad = spawn(["join", wrong, "--name", "mallory", "--reason", "guess"], d.guestEnv);
  expect(await bad.exit()).not.toBe(0);
  expect(bad.err).toContain("the code did not match: nobody was connected");
  await host.waitFor(/wrong code: mallory tried [0-9A-Z]{4}-\?\?\?\? with the wrong second half; the code is burnt/);
  expect(host.out).not.toContain("Allow mallory");
  const good = spawn(["join", code, "--name", "ana", "--reason", "late"], d.guestEnv);
  expect(await good.exit()).not.toBe(0);
  expect(good.err).toContain("this code is not valid");
  expect(d.audit().some((e) => e.event === "code.mismatch")).toBe(true);
  // The secret half never reached the coordinator: not its logs, audit log or database.
  const secret = code.slice(5);
  const db = fs.readFileSync(path.join(d.dir, "tessera.db")).toString("latin1");
  for (const text of [d.coordinator.out + d.coordinator.err, JSON.stringify(d.audit()), db]) {
    expect(text).not.toContain(code.replace("-", ""));
    expect(text).not.toMatch(new RegExp(`\\b${secret}\\b`));
  }
  host.kill("SIGINT");
  await host.exit();
});

test("a request by share id is shown as not verified by a code", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { approver } = await agentShare(d, "byid", echo.port, ["--allow-requests-by-id"]);
  const guest = spawn(
    ["connect", "--share-id", "byid", "--target", `127.0.0.1:${echo.port}`, "--name", "bo", "--reason", "r"],
    d.guestEnv,
  );
  await approver.waitFor(/not verified by a code: only the coordinator vouches for this guest[\s\S]*Allow bo/);
  approver.write("n\n");
  expect(await guest.exit()).not.toBe(0);
});
