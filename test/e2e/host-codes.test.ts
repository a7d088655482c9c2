// The host hears about its codes at its real prompt (a PTY): a short lifetime is given in seconds, a code
// that lapses unused is reported, and a second request queued behind the first is marked as waiting.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { deploy, echoServer, killAll, share, spawn } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

test("a code valid under a minute says seconds, and the host is told when it expires unused", async () => {
  const d = await deploy(["--code-ttl", "2s"]);
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  await host.waitFor(/single use, valid 2 seconds; c \+ Enter makes another code/);
  // The key a guest's `tessera receipt verify --host-key` needs is printed, and it is this host's.
  const printed = (await host.waitFor(/host key (SHA256:[A-Za-z0-9+/]{43})/))[1]!;
  const { certInfo } = await import("../../src/pki/index.ts");
  expect(printed).toBe(certInfo(fs.readFileSync(path.join(d.dir, "host/host.crt"), "utf8")).spki);
  await host.waitFor(new RegExp(`code ${code.slice(0, 4)}-\\?\\?\\?\\? expired unused; c \\+ Enter makes another`));
  // Every line of the code's hint fits 80 columns.
  const hint = host.all.slice(host.all.indexOf("invite:"));
  for (const line of hint.split(/\r?\n/).slice(0, 3)) expect(line.length).toBeLessThanOrEqual(80);
});

test("a second request while one is on screen: '1 more waiting', then its own prompt after the first answer", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  host.write("c\r");
  const second = (await host.waitFor(/code: [0-9A-Z]{4}-[0-9A-Z]{4}[\s\S]*code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
  const first = spawn(["join", code, "--name", "first", "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(/Allow first /);
  const other = spawn(["join", second, "--name", "second", "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(/second is asking too: 1 more waiting after this one/);
  host.write("y\r");
  await first.waitFor(/forwarding/);
  await host.waitFor(/── access request \S+ ──[\s\S]*guest {3}second[\s\S]*Allow second /);
  host.write("n\r");
  expect(await other.exit()).toBe(1);
});
