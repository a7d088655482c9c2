// Invites as people paste them: the whole printed line at the hidden code prompt, spaces around the `/`, a
// code split by a space; a coordinator's CA kept only once the join's own handshake held; a changed CA names
// the file to delete; ssh-config takes the invite form.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { deploy, echoServer, killAll, run, share, spawn, tmpDir } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

test("the host's whole printed line, pasted at the hidden prompt with stray spaces, joins from a fresh home", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const fresh = { TESSERA_HOME: path.join(tmpDir(), "fresh") };
  const guest = spawn(["join", "--name", "paster", "--local", "127.0.0.1:0"], fresh, { pty: true });
  await guest.waitFor(/code \(from the host, not echoed\): /);
  const [a, b] = code.split("-");
  guest.write(`  invite: tessera join ${d.address} / ${a} ${b} --reason "pasted"  \r`);
  await host.waitFor(/Allow paster /);
  host.write("y\r");
  await guest.waitFor(/forwarding 127\.0\.0\.1:\d+/);
  expect(fs.existsSync(path.join(fresh.TESSERA_HOME, "coordinators", `localhost_${d.port}.crt`))).toBe(true);
});

test("a CA is kept only after the join's handshake held; a changed CA names the file to delete", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { code } = await share(d, echo.port, true);
  const fresh = { TESSERA_HOME: path.join(tmpDir(), "fresh") };
  // 127.0.0.1 is not a name in the certificate: refused, and nothing kept.
  const wrong = await run(["join", `127.0.0.1:${d.port}/${code}`, "--name", "x"], fresh);
  expect(wrong.code).toBe(1);
  expect(wrong.err).toContain(`use localhost:${d.port}`);
  expect(fs.existsSync(path.join(fresh.TESSERA_HOME, "coordinators"))).toBe(false);
  // Another deployment's CA kept under this address: the message names that file.
  const other = tmpDir();
  expect((await run(["ca", "--coordinator-name", "localhost", "--dir", "pki"], {}, other)).code).toBe(0);
  const kept = path.join(fresh.TESSERA_HOME, "coordinators", `localhost_${d.port}.crt`);
  fs.mkdirSync(path.dirname(kept), { recursive: true });
  fs.copyFileSync(path.join(other, "pki/ca.crt"), kept);
  const changed = await run(["join", `${d.address}/${code}`, "--name", "x"], fresh);
  expect(changed.code).toBe(1);
  expect(changed.err).toContain(`no longer presents the CA this machine kept for it in ${kept}`);
  expect(changed.err).toContain("delete that file and join again");
});

test("ssh-config takes the invite form; its comment lines fit 80 columns", async () => {
  const r = await run(["ssh-config", " localhost:8443 / K7QF-M2XD ", "--alias", "devbox"]);
  expect(r.code, r.err).toBe(0);
  expect(r.out).toMatch(/ProxyCommand .* join --stdio localhost:8443\/K7QF-M2XD --reason/);
  for (const line of r.out.split("\n").filter((l) => l.startsWith("#"))) expect(line.length).toBeLessThanOrEqual(80);
});
