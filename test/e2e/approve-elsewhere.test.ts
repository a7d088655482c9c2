// Issue 30 end to end at the real binary: an agent as a service, an approver paired from a fresh home, a
// guest approved at the approver's PTY with `y 15m`, bytes flow, and the receipt verifies through the chain
// (host key -> delegation -> approver); after `approvers remove` the agent refuses that approver's yes and
// nothing reaches the target.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { certInfo } from "../../src/pki/index.ts";
import { deploy, echoServer, killAll, run, spawn } from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

function roundTrip(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1" }, () => s.write(text));
    s.on("data", (b) => {
      s.end();
      resolve(b.toString());
    });
    s.on("error", reject);
  });
}

test("approve from another device: paired, approved at its PTY with y 15m, bytes flow, the receipt names the approver; removed, its yes is refused by the agent", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const agent = spawn(["agent", "--share-id", "db", "--allow", `127.0.0.1:${echo.port}`], d.hostEnv);
  await agent.waitFor(/serving share db/);
  const laptop = { TESSERA_HOME: path.join(d.dir, "laptop") };
  const add = spawn(["approvers", "add", "laptop", "--shares", "db"], d.hostEnv, { cwd: d.dir });
  const line = (await add.waitFor(/tessera approve --pair (\S+)/))[1]!;
  const paired = await run(["approve", "--pair", line], laptop);
  expect(paired.code, paired.err).toBe(0);
  expect(await add.exit()).toBe(0);

  const notes = path.join(d.dir, "asks.txt");
  const approver = spawn(
    ["approve", "--exec", `printf '%s|%s|%s\\n' "$1" "$2" "$TESSERA_TARGET" >> ${notes}`],
    laptop,
    {
      pty: true,
    },
  );
  const code = (await approver.waitFor(/code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
  const guest = spawn(
    ["join", code, "--name", "ana", "--reason", "debug the query", "--local", "127.0.0.1:0"],
    d.guestEnv,
  );
  await approver.waitFor(/Allow ana /);
  approver.write("y 15m\r");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  expect(await roundTrip(local, "hello through the approver")).toBe("hello through the approver");
  expect(fs.readFileSync(notes, "utf8")).toContain(`ana|"debug the query"|127.0.0.1:${echo.port}`);

  // The guest's receipt: signed by the approver, vouched for by the host's key through its delegation.
  const file = (await guest.waitFor(/the host's signed receipt for this session: (\S+\.json)/))[1]!;
  const hostKey = certInfo(fs.readFileSync(path.join(d.hostEnv.TESSERA_HOME, "host.crt"), "utf8")).spki;
  const verified = await run(["receipt", "verify", file, "--host-key", hostKey]);
  expect(verified.code, verified.err).toBe(0);
  expect(verified.out).toMatch(
    /ok: allow signed by \S+ \(the host key you named\); approved by laptop, delegated by host hosty until \d{4}-/,
  );
  const audit = await run(["audit", "verify", path.join(d.dir, "audit.jsonl"), "--host-key", hostKey]);
  expect(audit.code, audit.err).toBe(0);
  expect(audit.out).toMatch(/seq \d+: approved by laptop, delegated by host hosty until/);
  guest.kill("SIGINT");
  await guest.exit();
  const served = echo.received().length;

  // Removed at the host: the coordinator may keep routing to the approver, the agent refuses its yes.
  const removed = await run(["approvers", "remove", "laptop"], d.hostEnv);
  expect(removed.code, removed.err).toBe(0);
  approver.write("c\r");
  const code2 = (await approver.waitFor(new RegExp(`code: (?!${code})([0-9A-Z]{4}-[0-9A-Z]{4})`)))[1]!;
  const guest2 = spawn(["join", code2, "--name", "bo", "--local", "127.0.0.1:0"], d.guestEnv);
  await approver.waitFor(/Allow bo /);
  approver.write("y\r");
  await agent.waitFor(/refused session \S+: .*approver laptop: was removed by the host at .*; nothing was served/);
  expect(await guest2.exit()).not.toBe(0);
  expect(guest2.err).toContain("refused by the host");
  expect(echo.received().length).toBe(served);
  approver.kill("SIGINT");
  await approver.exit();
});
