// Liveness with real silence, not a process kill: a forwarder in the path stops forwarding without
// closing anything (as when a laptop lid closes or Wi-Fi drops), and heartbeats must notice.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import net from "node:net";
import { auditEvents, deploy, echoServer, killAll, roundTrip, share, spawn, type Deployment } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

const FAST = ["--heartbeat-interval", "500ms", "--heartbeat-timeout", "2s"];

/** A TCP forwarder to `port` that can go silent: bytes stop both ways, no socket closes. */
async function silencer(port: number): Promise<{ port: number; silent: boolean; close(): void }> {
  const pairs: [net.Socket, net.Socket][] = [];
  const state = { silent: false };
  const server = net.createServer({ allowHalfOpen: true }, (a) => {
    const b = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    pairs.push([a, b]);
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      from.on("data", (d) => {
        if (!state.silent) to.write(d);
      });
      // While silent, not even a close gets through: the far side hears nothing at all.
      from.on("end", () => {
        if (!state.silent) to.end();
      });
      from.on("error", () => {
        if (!state.silent) to.destroy();
      });
      from.on("close", () => {
        if (!state.silent) to.destroy();
      });
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    get silent() {
      return state.silent;
    },
    set silent(v: boolean) {
      state.silent = v;
    },
    close() {
      server.close();
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
    },
  };
}

async function silentGuest(d: Deployment, name: string) {
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const path = await silencer(d.port);
  const guest = spawn(["join", code, "--name", name, "--local", "127.0.0.1:0"], {
    ...d.guestEnv,
    TESSERA_COORDINATOR: `localhost:${path.port}`,
  });
  await host.waitFor(new RegExp(`Allow ${name} `));
  host.write("y\n");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  return { host, guest, path, local };
}

test("a guest that goes silent is noticed within the bound; after the grace its session ends saying so, on the host and in the audit log", async () => {
  const d = await deploy([...FAST, "--resume-grace", "2s"]);
  const { host, guest, path, local } = await silentGuest(d, "lidclosed");
  // A long-lived stream is open when the silence starts; it must be cut and counted.
  const sock = net.connect({ port: local, host: "127.0.0.1" });
  sock.write("hello");
  await new Promise((r) => sock.once("data", r));
  const cut = new Promise((r) => sock.once("close", r));
  path.silent = true;
  const [detach] = await auditEvents(d, "session.detach");
  expect(detach!.reason).toMatch(/^the guest's connection went silent at \d\d:\d\d:\d\d UTC$/);
  await cut;
  const [close] = await auditEvents(d, "session.close");
  expect(close!.reason).toBe(detach!.reason);
  const streamClose = (await auditEvents(d, "stream.close"))[0]!;
  expect(streamClose.reason).toBe(detach!.reason);
  expect(Number(streamClose.bytesUp)).toBeGreaterThan(0);
  await host.waitFor(/session \S+ ended: the guest's connection went silent at \d\d:\d\d:\d\d UTC/);
  // The guest's network comes back after the grace: its terminal hears why the session is gone.
  path.silent = false;
  await guest.waitFor(/session ended: the guest's connection went silent at \d\d:\d\d:\d\d UTC/);
  expect(await guest.exit()).toBe(1);
  path.close();
});

test("a silence shorter than the grace resumes the session with no new approval", async () => {
  const d = await deploy([...FAST, "--resume-grace", "60s"]);
  const { host, guest, path, local } = await silentGuest(d, "blip");
  path.silent = true;
  await auditEvents(d, "session.detach");
  await guest.waitFor(/lost the connection to the coordinator/);
  path.silent = false;
  await guest.waitFor(/session \S+ resumed/);
  expect((await auditEvents(d, "session.resume"))[0]!.afterRestart).toBe(false);
  // New connections work again, and the host was never asked a second time.
  let echoed: Buffer = Buffer.alloc(0);
  for (let i = 0; i < 50 && echoed.toString() !== "again"; i++)
    echoed = await roundTrip(local, Buffer.from("again")).catch(() => Buffer.alloc(0));
  expect(echoed.toString()).toBe("again");
  expect(host.all.match(/Allow blip /g)).toHaveLength(1);
  path.close();
});

test("a host whose agent goes silent: its guest is told when the grace ends", async () => {
  const d = await deploy([...FAST, "--resume-grace", "2s"]);
  const echo = await echoServer();
  const path = await silencer(d.port);
  const host = spawn(["share", "--port", String(echo.port)], {
    ...d.hostEnv,
    TESSERA_COORDINATOR: `localhost:${path.port}`,
  });
  const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})$/m))[1]!;
  const guest = spawn(["join", code, "--name", "waiting", "--local", "127.0.0.1:0"], d.guestEnv);
  await host.waitFor(/Allow waiting /);
  host.write("y\n");
  await guest.waitFor(/forwarding/);
  path.silent = true;
  const [away] = await auditEvents(d, "share.away");
  expect(away!.reason).toMatch(/^the host's agent went silent at \d\d:\d\d:\d\d UTC$/);
  await guest.waitFor(/session ended: the host's agent went silent at \d\d:\d\d:\d\d UTC/);
  expect(await guest.exit()).toBe(1);
  // The host's side noticed the silent coordinator too, and tries again by itself.
  await host.waitFor(/lost the coordinator/);
  path.close();
});
