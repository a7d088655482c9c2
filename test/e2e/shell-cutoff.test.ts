// A shared shell cut off while a full-screen program holds the guest's terminal (the alternate screen, the
// cursor hidden): the guest's terminal is put back, as ssh and tmux do, whether the host goes or an operator revokes.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { auditEvents, deploy, killAll, run, shareShell, spawn } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

const RESET = ["\x1b[?1049l", "\x1b[?25h", "\x1b[?2004l", "\x1b[0m"];

async function fullScreenGuest(d: Awaited<ReturnType<typeof deploy>>) {
  const { host, code } = await shareShell(d, ["--command", "sh", "--no-record"], { env: { PS1: "tsh$ ", ENV: "" } });
  const guest = spawn(["join", code, "--name", "vi"], d.guestEnv, { pty: true });
  await host.waitFor(/Allow vi /);
  host.write("y\r");
  await guest.waitFor(/tsh\$ /);
  // What an editor does on start: alternate screen, cursor hidden, bracketed paste on.
  guest.write("printf '\\033[?1049h\\033[?25l\\033[?2004hFULLSCREEN'; sleep 600\r");
  await guest.waitFor(/FULLSCREEN/);
  return { host, guest, mark: guest.out.lastIndexOf("FULLSCREEN") };
}

test("the host goes: the guest's terminal leaves the alternate screen and shows its cursor again", async () => {
  const d = await deploy();
  const { host, guest, mark } = await fullScreenGuest(d);
  host.kill("SIGINT");
  expect(await guest.exit()).toBe(1);
  const after = guest.out.slice(mark);
  for (const seq of RESET) expect(after).toContain(seq);
});

test("an operator revokes: the same reset", async () => {
  const d = await deploy();
  const { guest, mark } = await fullScreenGuest(d);
  const sessionId = (await auditEvents(d, "session.open"))[0]!.sessionId as string;
  const opEnv = { TESSERA_HOME: path.join(d.dir, "operator"), TESSERA_COORDINATOR: d.address };
  const token = fs.readFileSync(path.join(d.dir, "pki/operator-token"), "utf8").trim();
  expect((await run(["token", token], opEnv)).code).toBe(0);
  expect((await run(["revoke", sessionId, "--url", `http://127.0.0.1:${d.httpPort}`], opEnv)).code).toBe(0);
  expect(await guest.exit()).toBe(1);
  const after = guest.out.slice(mark);
  for (const seq of RESET) expect(after).toContain(seq);
});
