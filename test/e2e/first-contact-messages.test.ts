// The places a new user trips, run as that user runs them (the binary, real ports and files), each message
// checked for the fix it names, not only for failing.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { deploy, killAll, run, spawn, tmpDir } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

test("addresses and certificates in the user's words: 127.0.0.1 for localhost, the HTTP port, a busy port", async () => {
  const d = await deploy();
  const g = { TESSERA_HOME: path.join(d.dir, "g2") };
  const ip = await run(["link", `127.0.0.1:${d.port}`, "--ca-file", "pki/ca.crt"], g, d.dir);
  expect(ip.code).toBe(1);
  expect(ip.err).toContain(`the coordinator's certificate names localhost, not 127.0.0.1; use localhost:${d.port}`);
  // The same through the trust-on-first-use path (an invite's address), which checks names itself.
  const invite = await run(["join", `127.0.0.1:${d.port}/ABCD-EFGH`], g, d.dir);
  expect(invite.err).toContain(`use localhost:${d.port}`);
  const http = await run(["link", `localhost:${d.httpPort}`, "--ca-file", "pki/ca.crt"], g, d.dir);
  expect(http.code).toBe(1);
  expect(http.err).toContain(
    "that is the coordinator's HTTP port (--http), or not a coordinator; use the --listen port",
  );
  const busy = await run(
    ["coordinator", "--listen", `127.0.0.1:${d.port}`, "--http", "127.0.0.1:0", "--audit", "b.jsonl", "--db", "b.db"],
    {},
    d.dir,
  );
  expect(busy.code).toBe(1);
  expect(busy.err).toContain(
    `cannot listen on --listen 127.0.0.1:${d.port}: 127.0.0.1:${d.port} is already in use (another coordinator?)`,
  );
  const busyHttp = await run(
    [
      "coordinator",
      "--listen",
      "127.0.0.1:0",
      "--http",
      `127.0.0.1:${d.httpPort}`,
      "--audit",
      "c.jsonl",
      "--db",
      "c.db",
    ],
    {},
    d.dir,
  );
  expect(busyHttp.err).toContain(
    `cannot listen on --http 127.0.0.1:${d.httpPort}: 127.0.0.1:${d.httpPort} is already in use`,
  );
});

test("a --ca-file that is not a certificate says so (and a fingerprint file names --ca-pin)", async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, "junk.crt"), "hello\n");
  const pin = `sha256:${"ab".repeat(32)}`;
  fs.writeFileSync(path.join(dir, "ca.sha256"), `${pin}\n`);
  const env = { TESSERA_HOME: path.join(dir, "g") };
  const junk = await run(["link", "localhost:1", "--ca-file", "junk.crt"], env, dir);
  expect(junk.code).toBe(1);
  expect(junk.err).toContain("--ca-file junk.crt is not a PEM certificate");
  // Checked before any waiting on the network.
  expect(junk.err).not.toContain("waiting for the coordinator");
  const fp = await run(["link", "localhost:1", "--ca-file", "ca.sha256"], env, dir);
  expect(fp.err).toContain(`holds a fingerprint, not a certificate: use --ca-pin ${pin}`);
});

test("--reason: over 500 characters, an ESC in it, or no value at all, each said before anything is sent", async () => {
  const dir = tmpDir();
  const env = { TESSERA_HOME: path.join(dir, "g"), TESSERA_COORDINATOR: "localhost:1" };
  const long = await run(["join", "ABCD-EFGH", "--reason", "a".repeat(501)], env, dir);
  expect(long.code).toBe(1);
  expect(long.err).toContain("--reason is at most 500 characters (this one has 501)");
  expect(long.err).not.toContain("frame");
  const esc = await run(["join", "ABCD-EFGH", "--reason", "see \x1b[31mred"], env, dir);
  expect(esc.err).toContain("--reason contains an escape character (ESC) at position 5: write it as plain text");
  const none = await run(["join", "ABCD-EFGH", "--reason"], env, dir);
  expect(none.code).toBe(1);
  expect(none.err).toContain("--reason needs a value");
  const before = await run(["join", "ABCD-EFGH", "--reason", "--local", "127.0.0.1:0"], env, dir);
  expect(before.err).toContain("--reason needs a value");
  for (const r of [long, esc, none, before]) expect(r.err).not.toContain("waiting for the coordinator");
});

test("audit verify --cert with the CA names the coordinator's certificate; replay of a non-recording says so", async () => {
  const d = await deploy();
  const r = await run(["audit", "verify", "audit.jsonl", "--cert", "pki/ca.crt"], {}, d.dir);
  expect(r.code).toBe(1);
  expect(r.err).toContain(
    "--cert pki/ca.crt: that is the CA, not the coordinator's certificate; pass pki/coordinator.crt",
  );
  expect(r.err).not.toContain("broken");
  const ok = await run(["audit", "verify", "audit.jsonl", "--cert", "pki/coordinator.crt"], {}, d.dir);
  expect(ok.code, ok.err).toBe(0);
  const replay = await run(["replay", "audit.jsonl"], {}, d.dir);
  expect(replay.code).toBe(1);
  expect(replay.err).toContain("audit.jsonl: not an asciicast recording");
  expect(replay.err).toContain("replay plays the .cast files share --shell records");
});

test("TESSERA_HOME that is a file, or not writable by this user, is named with the fix", async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, "afile"), "x");
  const home = path.join(dir, "afile");
  const writeTo = await run(
    ["join", "ABCD-EFGH", "--reason", "x"],
    { TESSERA_HOME: home, TESSERA_COORDINATOR: "localhost:1" },
    dir,
  );
  expect(writeTo.code).toBe(1);
  expect(writeTo.err).toContain(`TESSERA_HOME (${home}), or a folder on its path, is a file, not a directory`);
  expect(writeTo.err).toContain("set TESSERA_HOME to a directory of your own");
  // Not writable: run as nobody (root ignores permissions) against a root-owned directory.
  const setpriv = Bun.which("setpriv");
  if (!setpriv || process.getuid?.() !== 0) return console.warn("SKIPPED the EACCES half: needs root and setpriv");
  const locked = path.join(dir, "locked");
  fs.mkdirSync(locked, { mode: 0o755 });
  // A linked machine (readable ca.crt), whose first join must write its identity key there.
  fs.writeFileSync(path.join(locked, "ca.crt"), "-----BEGIN CERTIFICATE-----\n", { mode: 0o644 });
  fs.chmodSync(dir, 0o755);
  const { TESSERA } = await import("./harness.ts");
  const bin = TESSERA.join(" ");
  const p = Bun.spawn(
    [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", "-c", `${bin} join ABCD-EFGH --reason x`],
    {
      env: { ...process.env, TESSERA_HOME: locked, TESSERA_COORDINATOR: "localhost:1" },
      stderr: "pipe",
      stdout: "pipe",
    },
  );
  const err = await new Response(p.stderr).text();
  expect(await p.exited).toBe(1);
  expect(err).toContain(`TESSERA_HOME (${locked}) is not writable by this user (EACCES)`);
});

test("bare tessera prints the help and exits 2; audit tail --help shows -n", async () => {
  const bare = await run([]);
  expect(bare.code).toBe(2);
  expect(bare.out).toContain("Usage: tessera COMMAND");
  const tail = await run(["audit", "tail", "--help"]);
  expect(tail.code).toBe(0);
  expect(tail.out).toMatch(/-n, --lines LINES/);
  for (const line of tail.out.split("\n")) expect(line.length).toBeLessThanOrEqual(80);
  const ok = spawn(["audit", "tail", "--help"]);
  expect(await ok.exit()).toBe(0);
});
