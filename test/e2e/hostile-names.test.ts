// A guest name with a bidi override, a zero-width space or tag characters is refused by the coordinator's
// name rule with a message saying why; the host is never asked, and the audit log holds no request.
import { afterAll, expect, test } from "bun:test";
import { deploy, echoServer, joinApproved, killAll, share, spawn } from "./harness.ts";

afterAll(killAll);

test("join --name with bidi, zero-width or tag characters is refused with the rule; a plain name still works", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  for (const name of ["evil\u202eexe.txt", "ad\u200bmin", "alice\u{e0041}\u{e0042}", "bell\u0085"]) {
    const g = spawn(["join", code, "--name", name, "--local", "127.0.0.1:0"], d.guestEnv);
    expect(await g.exit()).not.toBe(0);
    expect(g.err).toMatch(/must not contain control, bidi, zero-width or tag characters/);
  }
  expect(host.all).not.toContain("Allow ");
  expect(d.audit().filter((l) => l.event === "request")).toEqual([]);
  // The code was never spent on a refused frame: a guest with a plain name gets in with it.
  const { guest } = await joinApproved(d, host, code, "alice");
  guest.kill("SIGTERM");
  await guest.exit();
}, 60_000);
