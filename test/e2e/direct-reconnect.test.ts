// The session's data channel across a reconnect of the host's agent (a network blip between host and
// coordinator) and a restart of it: the channel dies with the agent's connection and comes back without a
// local connection asking (and without a new yes); a dead channel is never handed a connection; and the
// direct path the agent proved before is used again after a blip, dialling nothing.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import net from "node:net";
import { auditEvents, deploy, echoServer, killAll, roundTrip, spawn, type Deployment } from "./harness.ts";
import { joinWith, metric, relayedBytes } from "./direct-helpers.ts";
import { eventually } from "../coordinator/live.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

/** A TCP forwarder to `port` whose live connections can be cut at once while it goes on accepting new ones. */
async function cuttable(port: number): Promise<{ port: number; cutAll(): number; close(): void }> {
  const live = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (a) => {
    const b = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    for (const s of [a, b]) {
      live.add(s);
      s.on("close", () => live.delete(s));
      s.on("error", () => {});
    }
    a.pipe(b);
    b.pipe(a);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    cutAll() {
      const n = live.size;
      for (const s of live) s.destroy();
      return n;
    },
    close() {
      server.close();
      for (const s of live) s.destroy();
    },
  };
}

/** Waits until the coordinator counts `n` data channels. */
async function channelsReach(d: Deployment, n: number, what: string): Promise<void> {
  await eventually(async () => {
    const got = metric(await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text(), "tessera_channels_open");
    if (got !== n) throw new Error(`${got} channels`);
  }, what);
}

/**
 * A share whose host reaches the coordinator through a cuttable forwarder, and a guest joined to it with
 * `joinArgs`. Only the host's connections pass the forwarder: its streams' data connections go to the
 * address its control connection reached, so they pass it too.
 */
async function shareBehindForwarder(name: string, joinArgs: string[] = []) {
  const d = await deploy();
  const echo = await echoServer();
  const fwd = await cuttable(d.port);
  const host = spawn(
    ["share", "--port", String(echo.port)],
    { ...d.hostEnv, TESSERA_COORDINATOR: `localhost:${fwd.port}` },
    { cwd: d.dir },
  );
  const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]!;
  const { guest, local } = await joinWith(d, host, code, name, joinArgs);
  return { d, fwd, host, guest, local };
}

test("after the agent's connection drops and comes back, the guest's channel comes back by itself and new streams take the direct path again", async () => {
  const { d, fwd, host, guest, local } = await shareBehindForwarder("blip");
  await guest.waitFor(/path: direct to the host/);
  await channelsReach(d, 1, "the session's channel");

  expect(fwd.cutAll()).toBeGreaterThan(0);
  await host.waitFor(/reconnected to the coordinator/);
  // The agent says the path it proved still holds; it dials no hint again to say so.
  const [kept] = await auditEvents(d, "direct.probe", 2).then((e) => e.slice(1));
  expect(kept).toMatchObject({ by: "host", ok: true, kept: true, dialled: 0 });
  expect(host.all).toMatch(/direct path to the guest at (\[[\da-f:]+\]|[\d.]+):\d+ kept across the reconnect/);
  // The channel died with the agent's connection and is back, with no local connection asking; a channel
  // is no stream in the audit log.
  expect(d.audit().some((e) => e.event === "stream.open")).toBe(false);
  await channelsReach(d, 1, "the channel back after the reconnect");

  // New streams are direct again: byte-exact, and the coordinator relays none of their bytes. (A channel
  // asked for in the moment between the agent's return and its word on the path is relayed, and gives way
  // once the guest hears; so the claim is that one of the next few is direct, not the very first.)
  let direct = false;
  for (let i = 1; i <= 5 && !direct; i++) {
    const before = await relayedBytes(d);
    const payload = Buffer.alloc(200_000, i);
    expect((await roundTrip(local, payload)).equals(payload)).toBe(true);
    const open = (await auditEvents(d, "stream.open", i)).at(-1)!;
    await eventually(async () => {
      if (!d.audit().some((e) => e.event === "stream.close" && e.streamId === open.streamId))
        throw new Error("not closed yet");
    }, "the stream's close line");
    direct = open.path === "direct";
    if (direct) expect(await relayedBytes(d)).toBe(before);
  }
  expect(direct).toBe(true);

  for (const p of [guest, host]) p.kill("SIGINT");
  await Promise.all([guest.exit(), host.exit()]);
  fwd.close();
});

test("on the relay too (join --relay-only), a channel refused while the agent was away is asked for again once it is back", async () => {
  // --pool is still accepted (it has no effect now).
  const { d, fwd, host, guest, local } = await shareBehindForwarder("relayed", ["--relay-only", "--pool", "4"]);
  await channelsReach(d, 1, "the session's channel");
  fwd.cutAll();
  await host.waitFor(/reconnected to the coordinator/);
  await channelsReach(d, 1, "the channel back after the reconnect");
  expect(d.audit().some((e) => e.event === "stream.open")).toBe(false);
  const payload = Buffer.alloc(50_000, 3);
  expect((await roundTrip(local, payload)).equals(payload)).toBe(true);
  expect((await auditEvents(d, "stream.open"))[0]).toMatchObject({ path: "relay" });
  for (const p of [guest, host]) p.kill("SIGINT");
  await Promise.all([guest.exit(), host.exit()]);
  fwd.close();
});

test("an agent killed and started again: its half-closed channel is not handed the next connection, and a new one comes by itself", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const args = ["agent", "--share-id", "db1", "--allow", `127.0.0.1:${echo.port}`];
  let agent = spawn(args, d.hostEnv);
  await agent.waitFor(/serving share db1/);
  const approver = spawn(["share", "--share-id", "db1"], d.hostEnv);
  const code = (await approver.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})$/m))[1]!;
  const { guest, local } = await joinWith(d, approver, code, "ann");
  await guest.waitFor(/path: direct to the host/);
  await channelsReach(d, 1, "the session's channel");

  // A killed process's sockets end with a FIN: the guest's direct channel is half-closed, not reset.
  agent.kill("SIGKILL");
  await agent.exit();
  agent = spawn(args, d.hostEnv);
  await agent.waitFor(/serving share db1/);
  await channelsReach(d, 1, "the channel back after the restart");
  // The very first connection works: the dead channel (verified long before the kill) was not left for it.
  const payload = Buffer.alloc(100_000, 9);
  expect((await roundTrip(local, payload)).equals(payload)).toBe(true);
  for (const p of [guest, approver, agent]) p.kill("SIGINT");
  await Promise.all([guest.exit(), approver.exit(), agent.exit()]);
});
