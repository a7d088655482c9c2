// Stream-path behaviour the rewrite onto native sockets must keep: a burst of connections opened at
// once (a client's pool) all get streams, and a client that sends and half-closes at once loses nothing.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { deploy, echoServer, joinApproved, killAll, roundTrip, share } from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

test("200 connections opened in one burst all get working streams, and the session survives", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { guest, local } = await joinApproved(d, host, code, "burst");
  const socks = await Promise.all(
    Array.from(
      { length: 200 },
      () =>
        new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect({ port: local, host: "127.0.0.1" }, () => resolve(s));
          s.on("error", reject);
        }),
    ),
  );
  // Every connection echoes its own marker.
  const echoed = await Promise.all(
    socks.map(
      (s, i) =>
        new Promise<string>((resolve) => {
          const want = `m${i};`;
          let got = "";
          s.on("data", (b: Buffer) => {
            got += b.toString();
            if (got.length >= want.length) resolve(got);
          });
          s.write(want);
        }),
    ),
  );
  for (const [i, e] of echoed.entries()) expect(e).toBe(`m${i};`);
  for (const s of socks) s.destroy();
  expect(guest.proc.exitCode).toBeNull();
  // One more after the burst still works.
  const p = randomBytes(1024);
  expect((await roundTrip(local, p)).equals(p)).toBe(true);
});

test("a client that sends and half-closes before its stream is up still gets every byte back", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { local } = await joinApproved(d, host, code, "eager");
  // roundTrip writes the payload and ends in the same tick as connect: nothing is up yet.
  const payloads = Array.from({ length: 8 }, (_, i) => randomBytes(300_000 + i));
  const echoed = await Promise.all(payloads.map((p) => roundTrip(local, p)));
  for (const [i, e] of echoed.entries()) expect(e.equals(payloads[i]!)).toBe(true);
});
