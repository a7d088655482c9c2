// The code need not be on join's command line (where `ps` shows it for the whole session): typed unseen
// at a terminal, or piped as the first line of stdin.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import { deploy, echoServer, killAll, roundTrip, share, spawn } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

test("at a terminal, join asks for the code without echo, and the code never appears in its argv", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const guest = spawn(["join", "--name", "typist", "--reason", "typed code", "--local", "127.0.0.1:0"], d.guestEnv, {
    pty: true,
  });
  await guest.waitFor(/code \(from the host, not echoed\): /);
  guest.write(`${code.toLowerCase()}\r`);
  await host.waitFor(/Allow typist /);
  host.write("y\n");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  expect((await roundTrip(local, Buffer.from("ping"))).toString()).toBe("ping");
  // Not echoed at the prompt, and not in the process's command line.
  expect(guest.out).not.toContain(code);
  expect(guest.out.toUpperCase()).not.toContain(code);
  const cmdline = fs.readFileSync(`/proc/${guest.proc.pid}/cmdline`, "utf8");
  expect(cmdline.toUpperCase()).not.toContain(code.replace("-", ""));
  expect(cmdline.toUpperCase()).not.toContain(code);
});

test("piped, the first line of stdin is the code", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const guest = spawn(["join", "--name", "piper", "--local", "127.0.0.1:0"], d.guestEnv);
  guest.write(`${code}\n`);
  await host.waitFor(/Allow piper /);
  host.write("y\n");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  expect((await roundTrip(local, Buffer.from("pong"))).toString()).toBe("pong");
});
