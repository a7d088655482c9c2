// The README's Quickstart, word for word: its command lines are read from README.md and run by bash in
// an empty directory, with `tessera` found on PATH as setup leaves it. Only XXXX-XXXX is replaced, by
// the code `share` printed, and the host's `y` is typed at its real prompt (a PTY).
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { BIN, killAll, roundTrip, spawnArgv, tmpDir } from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

function quickstartLines(): string[] {
  const readme = fs.readFileSync(path.join(import.meta.dir, "../../README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Quickstart"));
  const block = /```\n([\s\S]*?)```/.exec(section)![1]!;
  return block
    .split("\n")
    .map((l) => l.replace(/\s+#\s.*$/, "").trim())
    .filter(Boolean);
}

/** A bash command that replaces itself with the line (env assignments kept), so its pid is tessera's. */
function exec(line: string): string[] {
  const bg = line.endsWith("&");
  const body = bg ? line.slice(0, -1).trim() : line;
  return ["bash", "-c", /^[A-Z_]+=/.test(body) ? `exec env ${body}` : `exec ${body}`];
}

test("the Quickstart runs as written: ca, coordinator, link, share, link, join, and bytes reach port 5432", async () => {
  const lines = quickstartLines();
  expect(lines.map((l) => l.split(/\s+/).find((w) => !w.includes("=") || w.startsWith("--"))!)).toEqual(
    Array(lines.length).fill("tessera"),
  );
  const dir = tmpDir();
  const bin = path.join(dir, ".bin");
  fs.mkdirSync(bin);
  fs.symlinkSync(BIN, path.join(bin, "tessera"));
  const env = { PATH: `${bin}:${process.env.PATH}` };
  // The Quickstart's target: something listening on 5432 (an echo server stands in for PostgreSQL).
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
  try {
    let code = "";
    for (const line of lines) {
      if (line.endsWith("&")) {
        const p = spawnArgv(exec(line), env, { cwd: dir });
        await p.waitFor(/listening on/);
      } else if (/ share /.test(line)) {
        const host = spawnArgv(exec(line), env, { cwd: dir, pty: true });
        code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]!;
        void (async () => {
          await host.waitFor(/\[y\/N\]/);
          host.write("y\r");
        })();
      } else if (/ join /.test(line)) {
        const guest = spawnArgv(exec(line.replace("XXXX-XXXX", code)), env, { cwd: dir });
        const fwd = await guest.waitFor(/forwarding 127\.0\.0\.1:15432 -> 127\.0\.0\.1:5432/);
        expect(fwd).toBeTruthy();
        expect((await roundTrip(15432, Buffer.from("SELECT 1;"))).toString()).toBe("SELECT 1;");
      } else {
        const p = spawnArgv(exec(line), env, { cwd: dir });
        const status = await p.exit();
        expect(status, `${line}\n${p.err}`).toBe(0);
      }
    }
    expect(Buffer.concat(received).toString()).toBe("SELECT 1;");
  } finally {
    target.close();
  }
});
