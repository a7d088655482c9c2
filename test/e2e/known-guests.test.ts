// Issue 15 part 1 at a real PTY: a guest's identity persists in its TESSERA_HOME, so the host's prompt says
// "new guest" the first time and "known as NAME (2nd visit" the next; the same name from another home (another
// identity key), or the same identity under another name, is warned about loudly.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { auditEvents, deploy, echoServer, killAll, share, spawn, type Proc } from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

/** The n-th access request block the host showed (1-based), once its question is on screen. */
async function prompt(host: Proc, n: number): Promise<string> {
  await host.waitFor(new RegExp(`(?:[\\s\\S]*?── access request[\\s\\S]*?Allow \\S+ [\\s\\S]*?to answer\\)){${n}}`));
  return host.all.split("── access request")[n]!;
}

/** The n-th code the host printed (1-based). */
async function code(host: Proc, n: number): Promise<string> {
  await host.waitFor(new RegExp(`(?:^code: [0-9A-Z]{4}-[0-9A-Z]{4}\\r?$[\\s\\S]*?){${n}}`, "m"));
  return [...host.all.matchAll(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/gm)][n - 1]![1]!;
}

test("a returning guest is known; the same name with another key, or the key under another name, is warned about", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code: first } = await share(d, echo.port, true);
  const join = (c: string, name: string, env = d.guestEnv) =>
    spawn(["join", c, "--name", name, "--local", "127.0.0.1:0"], env);

  // First visit: a new guest; its identity key is made on first use, 0600.
  const g1 = join(first, "alice");
  const p1 = await prompt(host, 1);
  expect(p1).toContain("known   new guest");
  const idFile = path.join(d.guestEnv.TESSERA_HOME!, "identity.key");
  expect(fs.statSync(idFile).mode & 0o777).toBe(0o600);
  const id = p1.match(/identity (SHA256:\S+)/)![1]!;
  host.write("y\r");
  await g1.waitFor(/forwarding 127\.0\.0\.1:\d+/);
  g1.kill("SIGINT");
  await g1.exit();
  expect(
    JSON.parse(fs.readFileSync(path.join(d.hostEnv.TESSERA_HOME!, "known_guests.json"), "utf8")).guests,
  ).toMatchObject([{ id, names: ["alice"], visits: 1 }]);
  expect((await auditEvents(d, "request"))[0]).toMatchObject({ guest: "alice", guestId: id });

  // Second visit, same TESSERA_HOME: the same identity, with a fresh TLS key.
  host.write("c\r");
  const g2 = join(await code(host, 2), "alice");
  const p2 = await prompt(host, 2);
  expect(p2).toContain(`identity ${id}`);
  expect(p2).toMatch(/known as alice \(2nd visit, last /);
  expect(p2.match(/key {5}(SHA256:\S+)/)![1]).not.toBe(p1.match(/key {5}(SHA256:\S+)/)![1]);
  host.write("y\r");
  await g2.waitFor(/forwarding 127\.0\.0\.1:\d+/);
  g2.kill("SIGINT");
  await g2.exit();

  // Another TESSERA_HOME (linked to the same coordinator, but its own identity) says it is alice.
  const otherHome = path.join(d.dir, "guest-other");
  fs.cpSync(d.guestEnv.TESSERA_HOME!, otherHome, { recursive: true });
  fs.rmSync(path.join(otherHome, "identity.key"));
  host.write("c\r");
  const g3 = join(await code(host, 3), "alice", { TESSERA_HOME: otherHome });
  const p3 = await prompt(host, 3);
  expect(p3).toContain(`!!! WARNING: alice is known here with ANOTHER identity key (${id})`);
  expect(p3).not.toContain(`identity ${id}`);
  host.write("n\r");
  expect(await g3.exit()).toBe(1);

  // The first identity under another name.
  host.write("c\r");
  const g4 = join(await code(host, 4), "bob");
  const p4 = await prompt(host, 4);
  expect(p4).toContain("!!! WARNING: this identity is known here as alice (2 visit(s)), but now calls itself bob");
  host.write("n\r");
  expect(await g4.exit()).toBe(1);
  host.kill("SIGINT");
  await host.exit();
});
