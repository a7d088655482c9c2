// Safety nets at the user's level: a --host that is not one, or does not resolve; a guest listening beyond its
// own machine is warned what that opens; a second host under a taken name is told, and gets a suffix.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { deploy, echoServer, killAll, run, share, spawn } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

test("share --host: a name with a space is not a host, an unknown name is said not to resolve; neither is 'a bad port'", async () => {
  const d = await deploy();
  const bad = await run(["share", "--port", "5432", "--host", "bad host"], d.hostEnv, d.dir);
  expect(bad.code).toBe(1);
  expect(bad.err).toContain('--host "bad host" is not a host name or IP address');
  expect(bad.err).not.toContain("port");
  // An unknown name is said, and the share still starts (it may resolve later; the agent decides each stream).
  const unknown = spawn(["share", "--port", "5432", "--host", "no-such-host.invalid"], d.hostEnv, { cwd: d.dir });
  await unknown.waitFor(/warning: --host no-such-host\.invalid does not resolve on this machine/);
  await unknown.waitFor(/^code: /m);
});

test("join --local 0.0.0.0:PORT warns that every machine on the guest's networks can reach the host's service", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const guest = spawn(["join", code, "--name", "wide", "--local", "0.0.0.0:0"], d.guestEnv);
  await guest.waitFor(
    /warning: --local 0\.0\.0\.0:0 listens beyond this machine: every machine that can reach this one/,
  );
  expect(guest.err).toContain("use 127.0.0.1 unless that is what you mean");
  await host.waitFor(/Allow wide /);
  host.write("y\r");
  await guest.waitFor(/forwarding 0\.0\.0\.0:\d+/);
});

test("a second host enrolling under a taken name is warned and gets a suffix, which its certificate and the audit log carry", async () => {
  const d = await deploy();
  const tok = await run(["ca", "--add-enroll-token", "--dir", "pki"], {}, d.dir);
  expect(tok.code, tok.err).toBe(0);
  const token = fs.readFileSync(path.join(d.dir, "pki/enroll-token"), "utf8").trim();
  const second = { TESSERA_HOME: path.join(d.dir, "host2") };
  const r = await run(["link", d.address, "--token", token, "--name", "hosty"], second, d.dir);
  expect(r.code, r.err).toBe(0);
  expect(r.err).toContain('another host is already enrolled as "hosty"; this one is "hosty-2"');
  expect(r.out).toContain('enrolled as host "hosty-2"');
  expect(
    d
      .audit()
      .filter((e) => e.event === "host.enrol")
      .map((e) => e.host),
  ).toEqual(["hosty", "hosty-2"]);
});
