// `join --stdio`: one stream over stdin/stdout with half-close, status on stderr only; and real ssh through
// it as a ProxyCommand (from `tessera ssh-config`) against a private sshd on loopback.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
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
  spawnProgram,
  tmpDir,
} from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

test("--stdio: byte-exact stream over stdin/stdout, half-close honoured, nothing but data on stdout", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const guest = spawn(["join", code, "--stdio", "--name", "piper"], d.guestEnv);
  await host.waitFor(/Allow piper to reach/);
  host.write("y\r");
  await guest.waitFor(/session s-\S+ approved/);
  // 2 MiB of text in several writes, then end of input: the echo server answers everything and only
  // then closes, so both directions must survive our half-close.
  const payload = randomBytes(1024 * 1024).toString("hex");
  const stdin = guest.proc.stdin as import("bun").FileSink;
  for (let i = 0; i < payload.length; i += 300_000) stdin.write(payload.slice(i, i + 300_000));
  stdin.end();
  expect(await guest.exit()).toBe(0);
  expect(guest.out.length).toBe(payload.length);
  expect(guest.out === payload).toBe(true);
  expect(guest.err).toContain("waiting for the host to approve");
  const [closed] = await auditEvents(d, "session.close");
  expect(closed!.streams).toBe(1);
  host.kill("SIGINT");
  await host.exit();
});

test("--stdio: a denied request prints nothing on stdout and exits non-zero", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const guest = spawn(["join", code, "--stdio", "--name", "nope"], d.guestEnv);
  await host.waitFor(/Allow nope to reach/);
  host.write("n\r");
  expect(await guest.exit()).toBe(1);
  expect(guest.out).toBe("");
  expect(guest.err).toContain("access denied");
  host.kill("SIGINT");
  await host.exit();
});

test("connect --stdio through a running agent; the host ending the session ends the carrier with status 1", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { agent, approver } = await agentShare(d, "ssh7", echo.port, ["--allow-requests-by-id"]);
  const guest = spawn(
    ["connect", "--share-id", "ssh7", "--target", `127.0.0.1:${echo.port}`, "--stdio", "--name", "carrier"],
    d.guestEnv,
  );
  await approver.waitFor(/Allow carrier/);
  approver.write("y\n");
  // Input stays open: the stream lives until someone ends the session.
  (guest.proc.stdin as import("bun").FileSink).write("still here\n");
  await guest.waitFor(/still here/);
  expect(guest.out).toBe("still here\n");
  approver.kill("SIGINT");
  expect(await guest.exit()).toBe(1);
  expect(guest.err).toMatch(/session ended: /);
  await auditEvents(d, "session.close");
  agent.kill("SIGINT");
  await Promise.all([approver.exit(), agent.exit()]);
});

/** A private sshd on a loopback port: own host key, one authorized user key, config in a temp dir. */
async function privateSshd(): Promise<
  { port: number; dir: string; user: string; hostKeyPub: string; stop(): void } | undefined
> {
  const sshd = "/usr/sbin/sshd";
  if (!fs.existsSync(sshd) || !Bun.which("ssh") || !Bun.which("ssh-keygen")) return undefined;
  const dir = tmpDir();
  for (const [file, type] of [
    ["host_key", "ed25519"],
    ["user_key", "ed25519"],
  ]) {
    const r = Bun.spawnSync(["ssh-keygen", "-q", "-t", type!, "-N", "", "-f", path.join(dir, file!)]);
    if (!r.success) throw new Error(`ssh-keygen failed: ${r.stderr.toString()}`);
  }
  fs.copyFileSync(path.join(dir, "user_key.pub"), path.join(dir, "authorized_keys"));
  const user = Bun.spawnSync(["id", "-un"]).stdout.toString().trim();
  // sshd as root needs its privilege-separation directory; never touch the system sshd otherwise.
  if (process.getuid?.() === 0) fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const port = await freePort();
  fs.writeFileSync(
    path.join(dir, "sshd_config"),
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${dir}/host_key`,
      `PidFile ${dir}/sshd.pid`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      "StrictModes no",
      "UsePAM no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PubkeyAuthentication yes",
      "PermitRootLogin prohibit-password",
      `AllowUsers ${user}`,
      "LogLevel VERBOSE",
      "",
    ].join("\n"),
  );
  const p = spawnProgram([sshd, "-D", "-e", "-f", path.join(dir, "sshd_config")]);
  await p.waitFor(new RegExp(`Server listening on 127\\.0\\.0\\.1 port ${port}`));
  return {
    port,
    dir,
    user,
    hostKeyPub: fs.readFileSync(path.join(dir, "host_key.pub"), "utf8").trim(),
    stop: () => p.kill(),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

test("ssh through `join --stdio` as ProxyCommand (from `tessera ssh-config`): the host says y, the remote command runs", async () => {
  const sshd = await privateSshd();
  if (!sshd) {
    console.warn(
      "SKIPPED ssh ProxyCommand test: /usr/sbin/sshd, ssh or ssh-keygen is missing (scripts/test-services.sh installs them)",
    );
    return;
  }
  const d = await deploy();
  const { host, code } = await share(d, sshd.port, true);
  const block = await run(["ssh-config", code, "--alias", "devbox"], d.guestEnv);
  expect(block.code).toBe(0);
  expect(block.out).toMatch(/^Host devbox$/m);
  expect(block.out).toContain("join --stdio");
  expect(block.out).toContain("'ssh %r@%h:%p'");
  // The user's own ssh setup: their key, and a known_hosts entry for the alias with the real host key,
  // checked strictly, so ssh only succeeds if it reached this very sshd end to end.
  const cfg = path.join(sshd.dir, "ssh_config");
  fs.writeFileSync(path.join(sshd.dir, "known_hosts"), `devbox ${sshd.hostKeyPub.split(" ").slice(0, 2).join(" ")}\n`);
  fs.writeFileSync(
    cfg,
    block.out +
      [
        `  User ${sshd.user}`,
        `  IdentityFile ${sshd.dir}/user_key`,
        "  IdentitiesOnly yes",
        "  BatchMode yes",
        "  StrictHostKeyChecking yes",
        `  UserKnownHostsFile ${sshd.dir}/known_hosts`,
        "",
      ].join("\n"),
  );
  const ssh = spawnProgram(
    ["ssh", "-F", cfg, "devbox", "echo", "hello-from-sshd", "&&", "echo", "exit-status-next", "&&", "exit", "3"],
    d.guestEnv,
  );
  // The ProxyCommand's request reaches the host's prompt, with ssh's %r@%h:%p filled into the reason.
  await host.waitFor(new RegExp(`reason  "ssh ${sshd.user}@devbox:22"`));
  await host.waitFor(/Allow \S+ to reach 127\.0\.0\.1:\d+\?/);
  host.write("y\r");
  expect(await ssh.exit()).toBe(3);
  expect(ssh.out).toBe("hello-from-sshd\nexit-status-next\n");
  await auditEvents(d, "session.close");
  expect(d.audit().filter((e) => e.event === "stream.open").length).toBe(1);
  sshd.stop();
  host.kill("SIGINT");
  await host.exit();
});
