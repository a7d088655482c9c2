// The console on a node of several (shared PostgreSQL): a session held by node 1 shows on node 2's
// console, read from the store, and node 2's Revoke ends it on node 1 (the guest's terminal says why).
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { echoServer, killAll, roundTrip, run, spawn, tmpDir, type Proc } from "./harness.ts";
import { haveChromium, openBrowser, type Browser } from "./browser.ts";
import { PG, PgDatabases } from "../pg.ts";

setDefaultTimeout(120_000);
const dbs = new PgDatabases("tessera_console");
let browser: Browser | undefined;
afterEach(async () => {
  await browser?.close();
  browser = undefined;
});
afterAll(async () => {
  await killAll();
  await dbs.dropAll();
});

if (!PG) console.log("skipped: the console's cluster test needs TESSERA_TEST_PG_URL (scripts/test-services.sh)");

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function node(dir: string, db: string, name: string, port: number, http: number): Proc {
  return spawn(
    [
      "coordinator",
      "--certs",
      "pki",
      "--db",
      db,
      "--node",
      name,
      "--advertise",
      `127.0.0.1:${port}`,
      "--listen",
      `127.0.0.1:${port}`,
      "--http",
      `127.0.0.1:${http}`,
      "--audit",
      `audit-${name}.jsonl`,
      "--console",
    ],
    {},
    { cwd: dir },
  );
}

test.skipIf(!haveChromium || !PG)(
  "node 2's console shows the session node 1 holds, with its bytes from the store, and revokes it",
  async () => {
    const dir = tmpDir();
    expect((await run(["ca", "--coordinator-name", "localhost", "--dir", "pki"], {}, dir)).code).toBe(0);
    const db = await dbs.fresh();
    const [p1, p2, h1, h2] = await Promise.all([1, 2, 3, 4].map(() => freePort()));
    const n1 = node(dir, db, "n1", p1!, h1!);
    const n2 = node(dir, db, "n2", p2!, h2!);
    await Promise.all([n1.waitFor(/listening on/), n2.waitFor(/listening on/)]);
    const url = (await n2.waitFor(/console: (http:\/\/127\.0\.0\.1:\d+\/console) /))[1]!;

    const hostEnv = { TESSERA_HOME: path.join(dir, "host") };
    const token = fs.readFileSync(path.join(dir, "pki/enroll-token"), "utf8").trim();
    expect((await run(["link", `localhost:${p1}`, "--token", token, "--name", "hosty"], hostEnv, dir)).code).toBe(0);
    const guestEnv = { TESSERA_HOME: path.join(dir, "guest") };
    expect((await run(["link", `localhost:${p1}`, "--ca-file", "pki/ca.crt"], guestEnv, dir)).code).toBe(0);
    const echo = await echoServer();
    const host = spawn(["share", "--port", String(echo.port)], hostEnv, { cwd: dir });
    const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]!;
    const guest = spawn(["join", code, "--name", "ann", "--local", "127.0.0.1:0"], guestEnv);
    await host.waitFor(/Allow ann /);
    host.write("y\n");
    const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
    const payload = randomBytes(50_000);
    expect((await roundTrip(local, payload)).equals(payload)).toBe(true);

    browser = await openBrowser();
    const { page } = browser;
    await page.goto(url);
    await page.fill("#token", fs.readFileSync(path.join(dir, "pki/operator-token"), "utf8").trim());
    await page.click("#signin-button");
    // Node 2 holds nothing: the row comes from the store, with the totals node 1 wrote there.
    await page.waitForFunction(() => {
      const cells = document.querySelector("#sessions tbody tr")?.querySelectorAll("td");
      return (
        cells?.[2]?.textContent === "ann" &&
        cells[6]?.textContent === "on another node" &&
        cells[8]?.textContent !== "0"
      );
    });
    await browser.shot("cluster-sessions");
    await page.locator("#sessions tbody tr button").click();
    await page.click("#confirm-yes");
    await page.waitForFunction(() => document.querySelectorAll("#sessions tbody tr").length === 0);
    await guest.waitFor(/revoked by the operator/);
    expect(await guest.exit()).toBe(1);
    // Node 2's page: its own audit file, which holds no session line; node 1's has the revoke.
    const n1Audit = fs.readFileSync(path.join(dir, "audit-n1.jsonl"), "utf8");
    expect(n1Audit).toContain('"event":"revoke"');
    expect(browser.errors).toEqual([]);
    host.kill("SIGINT");
    await host.exit();
  },
);
