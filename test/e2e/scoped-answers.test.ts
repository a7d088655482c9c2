// Scoped answers at the host's real prompt (a PTY): y 2s ends a busy session on time, y 1 allows one
// connection, n REASON reaches the guest, ro makes a shell read-only for that guest alone.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { auditEvents, deploy, echoServer, killAll, roundTrip, share, shareShell, spawn } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

async function ask(
  d: Awaited<ReturnType<typeof deploy>>,
  host: Awaited<ReturnType<typeof share>>["host"],
  code: string,
  name: string,
  answer: string,
) {
  const guest = spawn(["join", code, "--name", name, "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(new RegExp(`answer  y, n, or scoped[\\s\\S]*Allow ${name} `));
  host.write(`${answer}\r`);
  return guest;
}

test("y 2s: a busy session ends when its time is over; the guest, the host and the audit log say why", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const guest = await ask(d, host, code, "timed", "y 2s");
  await host.waitFor(/approved timed \(for 2s\)/);
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  expect(guest.err).toContain("the host allows it for 2s");
  // Busy: bytes keep moving until the session is cut.
  const sock = net.connect({ port: local, host: "127.0.0.1" });
  const closed = new Promise((r) => sock.once("close", r));
  sock.on("data", () => {});
  sock.on("error", () => {});
  const pump = setInterval(() => sock.write("busy"), 50);
  await guest.waitFor(/session ended: the host allowed this session 2s, and that is over/);
  await closed;
  clearInterval(pump);
  await host.waitFor(/ended: the host allowed this session 2s, and that is over/);
  expect((await auditEvents(d, "session.close"))[0]).toMatchObject({ condition: "scope" });
});

test("y 1 allows one connection; n REASON is a denial the guest reads", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const guest = await ask(d, host, code, "once", "y 1");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  expect((await roundTrip(local, Buffer.from("one"))).toString()).toBe("one");
  await guest.waitFor(/session ended: the host allowed one connection, and it has closed/);
  host.write("c\r");
  const second = (await host.waitFor(/code: [0-9A-Z]{4}-[0-9A-Z]{4}[\s\S]*code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
  const denied = await ask(d, host, second, "later", "n too busy, try tomorrow");
  expect(await denied.exit()).toBe(1);
  expect(denied.err).toContain("access denied: the host declined: too busy, try tomorrow");
  expect((await auditEvents(d, "deny"))[0]).toMatchObject({ reason: "too busy, try tomorrow" });
});

test("ro: a watched shell read-only for this guest alone, whatever the share's own setting", async () => {
  const d = await deploy();
  const marks = fs.mkdtempSync(path.join(d.dir, "marks-"));
  const { host, code } = await shareShell(d, ["--command", "sh", "--no-record", "--watch"], {
    env: { PS1: "tsh$ ", ENV: "" },
  });
  const guest = spawn(["join", code, "--name", "watcher"], d.guestEnv, { pty: true });
  await host.waitFor(/answer {2}y, n, or scoped: y 15m, y 1, ro, n REASON/);
  await host.waitFor(/Allow watcher /);
  host.write("ro\r");
  await guest.waitFor(/read-only: you watch, the host types/);
  await guest.waitFor(/tsh\$ /);
  guest.write(`touch ${marks}/guest-was-here\r`);
  await host.waitFor(/watcher is typing, but this session is read-only: their keystrokes are ignored/);
  expect(fs.existsSync(path.join(marks, "guest-was-here"))).toBe(false);
  // The host, watching, is the one who types.
  host.write(`touch ${marks}/host-was-here\r`);
  await guest.waitFor(/host-was-here/);
});

test("ro on a plain --shell (no --watch) is refused at the prompt with the fix, and the request still waits", async () => {
  const d = await deploy();
  const { host, code } = await shareShell(d, ["--command", "sh", "--no-record"], { env: { PS1: "tsh$ ", ENV: "" } });
  const guest = spawn(["join", code, "--name", "watcher"], d.guestEnv, { pty: true });
  await host.waitFor(/Allow watcher /);
  host.write("ro\r");
  await host.waitFor(/ro needs someone at the shell: this share has no --watch[^\n]*`tessera share --shell --watch`/);
  await host.waitFor(/ro needs[\s\S]*Allow watcher /);
  host.write("y 1h 2h\r");
  await host.waitFor(/give one time, not two \("2h"\)/);
  host.write("y 1000h\r");
  await host.waitFor(/"1000h" is too long: at most 168h \(7 days\)/);
  host.write("y 1 1\r");
  await host.waitFor(/give one number of connections, not two/);
  host.write("y\r");
  await guest.waitFor(/tsh\$ /);
  expect(guest.all).not.toContain("read-only");
});

test("the guest keeps the host's signed receipt, and `tessera receipt verify` checks it offline; an edited one fails", async () => {
  const { certInfo } = await import("../../src/pki/index.ts");
  const { run } = await import("./harness.ts");
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port, true);
  const guest = await ask(d, host, code, "keeper", "y 1h");
  const file = (await guest.waitFor(/the host's signed receipt for this session: (\S+\.json)/))[1]!;
  const hostKey = certInfo(fs.readFileSync(path.join(d.dir, "host/host.crt"), "utf8")).spki;
  const ok = await run(["receipt", "verify", file, "--host-key", hostKey]);
  expect(ok.code, ok.err).toBe(0);
  expect(ok.out).toContain(`ok: allow signed by ${hostKey} (the host key you named)`);
  expect((await run(["receipt", "show", file])).out).toContain("decision  allow (for 1h)");
  const edited = JSON.parse(fs.readFileSync(file, "utf8"));
  edited.body.scope = { ttlMs: 86_400_000 };
  fs.writeFileSync(`${file}.edited`, JSON.stringify(edited));
  const bad = await run(["receipt", "verify", `${file}.edited`, "--host-key", hostKey]);
  expect(bad.code).toBe(1);
  expect(bad.err).toContain("the receipt does not verify: its signature does not verify");
  expect((await auditEvents(d, "approve"))[0]!.receipt).toBeString();
  // Issue 27: the operator pins the host key; a receipt by any other key fails, whatever the chain records.
  const log = path.join(d.dir, "audit.jsonl");
  const pinned = await run(["audit", "verify", log, "--host-key", hostKey]);
  expect(pinned.code, pinned.err).toBe(0);
  expect(pinned.out).toContain("1 consent receipt signed by a host key you pinned, each matching its decision");
  const other = `SHA256:${"A".repeat(43)}`;
  const wrong = await run(["audit", "verify", log, "--host-key", other]);
  expect(wrong.code).toBe(1);
  expect(wrong.err).toContain(`which is not a host key you pinned (--host-key)`);
});
