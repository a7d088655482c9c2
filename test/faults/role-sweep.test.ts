// The listener's role sweep must spare a guest whose share lives on another node (issue 26, Why #1):
// with --role-timeout 1s, connections that hold nothing are cut on the guest's node while the guest, its
// session and its long-lived stream stay; and the share's node still cuts a role-less stand-in.
import { afterAll, afterEach, expect, test } from "bun:test";
import net from "node:net";
import path from "node:path";
import fs from "node:fs";
import tls from "node:tls";
import { randomBytes } from "node:crypto";
import { PG, PgDatabases } from "../pg.ts";
import { echoServer, killAll, roundTrip, spawn, tmpDir } from "../e2e/harness.ts";
import { encodeFrame } from "../../src/wire/codec.ts";
import { PROTOCOL_VERSION } from "../../src/wire/protocol.ts";
import { Rig } from "./cluster.ts";

afterEach(killAll);
const dbs = new PgDatabases("tessera_sweep");
afterAll(() => dbs.dropAll());
if (!PG) console.warn("role-sweep.test: TESSERA_TEST_PG_URL is not set: SKIPPED");

/** A control connection that says hello and nothing else; resolves when the coordinator closes it. */
async function idleConnection(dir: string, port: number): Promise<Promise<void>> {
  const s = tls.connect({
    host: "127.0.0.1",
    port,
    servername: "localhost",
    ca: fs.readFileSync(path.join(dir, "pki/ca.crt")),
  });
  await new Promise<void>((r, j) => {
    s.once("secureConnect", () => r());
    s.once("error", j);
  });
  s.on("error", () => {});
  s.on("data", () => {});
  s.write(encodeFrame({ t: "hello", v: PROTOCOL_VERSION, client: "sweep-test" }));
  return new Promise<void>((r) => s.once("close", () => r()));
}

test.skipIf(!PG)(
  "a guest on one node whose share lives on another is not swept as idle",
  async () => {
    const dir = tmpDir();
    const rig = await Rig.start(dir, { db: await dbs.fresh(), nodes: 2, nodeArgs: ["--role-timeout", "1s"] });
    const [n1, n2] = rig.nodes as [(typeof rig.nodes)[0], (typeof rig.nodes)[0]];
    const hostEnv = await rig.link("hosty", { host: true, address: `localhost:${n1.port}` });
    const guestEnv = await rig.link("ann", { address: `localhost:${n2.port}` });
    const echo = await echoServer();
    const host = spawn(["share", "--port", String(echo.port)], hostEnv, { cwd: dir });
    const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]!;
    const guest = spawn(["join", code, "--name", "ann", "--local", "127.0.0.1:0"], guestEnv);
    await host.waitFor(/Allow ann /);
    host.write("y\n");
    const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);

    // A long-lived stream, open across the sweeps below.
    const long = net.connect(local, "127.0.0.1");
    let cut = false;
    long.on("close", () => {
      cut = true;
    });
    long.on("error", () => {});
    const echoed = (b: Buffer) =>
      new Promise<Buffer>((r) => {
        let got = Buffer.alloc(0);
        const on = (d: Buffer) => {
          got = Buffer.concat([got, d]);
          if (got.length >= b.length) {
            long.off("data", on);
            r(got);
          }
        };
        long.on("data", on);
        long.write(b);
      });
    const first = randomBytes(1000);
    expect((await echoed(first)).equals(first)).toBe(true);

    // Two role-less connections opened after the guest's, each cut by n2's sweep: by then the guest's
    // connection has been idle (as n2 sees it) longer than the role timeout, twice over.
    for (let i = 0; i < 2; i++) await await idleConnection(dir, n2.port);

    expect(cut).toBe(false);
    const second = randomBytes(1000);
    expect((await echoed(second)).equals(second)).toBe(true);
    expect(guest.proc.exitCode).toBeNull();
    expect(guest.all).not.toMatch(/without registering|reconnect|resum/i);
    expect(n1.events("session.detach")).toEqual([]);
    const p = randomBytes(50_000);
    expect((await roundTrip(local, p)).equals(p)).toBe(true);
    long.destroy();
  },
  120_000,
);
