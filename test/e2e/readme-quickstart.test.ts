// The README's Quickstart, as written: its two blocks are read from README.md and each pasted into one bash
// script, run from an empty directory with `tessera` found on PATH as setup leaves it. Terminal 1's block
// (coordinator in the background, link, share) runs in a PTY, where the host types `y` at the real prompt;
// terminal 2's block runs with XXXX-XXXX replaced by the code terminal 1 printed.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { BIN, killAll, roundTrip, spawnArgv, tmpDir } from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

/** The fenced blocks of the Quickstart section, as a person would copy them (comments and all). */
function quickstartBlocks(): string[] {
  const readme = fs.readFileSync(path.join(import.meta.dir, "../../README.md"), "utf8");
  const start = readme.indexOf("## Quickstart");
  const end = readme.slice(start + 1).search(/\n##+ /);
  const section = readme.slice(start, start + 1 + end);
  return [...section.matchAll(/```\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** Signals a whole process group (bash in a PTY leads its own, with its background jobs) and waits until it is gone. */
async function killGroup(pid: number): Promise<void> {
  const alive = () => {
    try {
      process.kill(-pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (alive()) process.kill(-pid, "SIGTERM");
  while (alive()) await Bun.sleep(50);
}

test("the Quickstart's two blocks run as pasted: one command for the operator, a code, y, and bytes reach port 5432", async () => {
  const blocks = quickstartBlocks();
  expect(blocks.length).toBe(2);
  // Every line a reader pastes is a tessera command (after its environment).
  for (const line of blocks.join("").split("\n").filter(Boolean))
    expect(line.replace(/^([A-Z_]+=\S+\s+)*/, "").split(/\s+/)[0]).toBe("tessera");
  const dir = tmpDir();
  const bin = path.join(dir, ".bin");
  fs.mkdirSync(bin);
  fs.symlinkSync(BIN, path.join(bin, "tessera"));
  const env = { PATH: `${bin}:${process.env.PATH}` };
  const received: Buffer[] = [];
  const target = net.createServer((s) =>
    s.on("data", (d: Buffer) => {
      received.push(d);
      s.write(d);
    }),
  );
  await new Promise<void>((resolve, reject) =>
    target
      .once("error", (e) => reject(new Error(`port 5432 must be free for this test: ${e.message}`)))
      .listen(5432, "127.0.0.1", resolve),
  );
  fs.writeFileSync(path.join(dir, ".terminal-1.sh"), blocks[0]!);
  const terminal1 = spawnArgv(["bash", ".terminal-1.sh"], env, { cwd: dir, pty: true });
  const terminals = [terminal1.proc.pid];
  try {
    // The coordinator's first run prints the lines to hand out; link waited for it; share printed a code.
    await terminal1.waitFor(/host: {2}tessera link localhost:8443 --token \S+/);
    await terminal1.waitFor(/enrolled as host/);
    const code = (await terminal1.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]!;
    await terminal1.waitFor(new RegExp(`tessera join localhost:8443/${code}`));
    fs.writeFileSync(path.join(dir, ".terminal-2.sh"), blocks[1]!.replaceAll("XXXX-XXXX", code));
    const terminal2 = spawnArgv(["bash", ".terminal-2.sh"], env, { cwd: dir, pty: true });
    terminals.push(terminal2.proc.pid);
    await terminal1.waitFor(/\[y\/N\]/).catch((e) => {
      throw new Error(`${e.message}\n--- terminal 2\n${terminal2.all}`);
    });
    terminal1.write("y\r");
    await terminal2.waitFor(/forwarding 127\.0\.0\.1:15432 -> 127\.0\.0\.1:5432/);
    expect((await roundTrip(15432, Buffer.from("SELECT 1;"))).toString()).toBe("SELECT 1;");
    expect(Buffer.concat(received).toString()).toBe("SELECT 1;");
    // Ctrl-C at the guest's terminal ends the session; the host's terminal says so.
    terminal2.write("\x03");
    expect(await terminal2.exit()).toBe(0);
    await terminal1.waitFor(/session .* (ended|closed)/);
  } finally {
    for (const pid of terminals) await killGroup(pid);
    target.close();
  }
});
