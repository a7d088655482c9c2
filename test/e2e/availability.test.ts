// Issue 12 item 1 through the binary: connections given back their slots, so many more connections than
// --max-connections over time still leave room for a guest, and /healthz says when no slot is left.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import tls from "node:tls";
import { encodeFrame } from "../../src/wire/codec.ts";
import { PROTOCOL_VERSION } from "../../src/wire/protocol.ts";
import { deploy, echoServer, joinApproved, killAll, roundTrip, share, type Deployment } from "./harness.ts";
import { eventually } from "../coordinator/live.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

const MAX = 8;

/** A control connection that completed TLS, said hello and got its welcome; rejects if the coordinator refuses it. */
function helloed(d: Deployment, ca: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect(
      { port: d.port, host: "127.0.0.1", servername: "localhost", ca, minVersion: "TLSv1.3" },
      () => {
        s.write(encodeFrame({ t: "hello", v: PROTOCOL_VERSION, client: "e2e" }));
      },
    );
    s.once("data", () => resolve(s));
    s.once("error", reject);
    s.once("close", () => reject(new Error("closed before the welcome")));
  });
}

async function healthz(d: Deployment): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${d.httpPort}/healthz`);
  return { status: r.status, body: await r.text() };
}

test(`after 5x --max-connections ${MAX} control connections a guest still joins and streams; /healthz answers 503 only while every slot is taken`, async () => {
  const d = await deploy(["--max-connections", String(MAX)]);
  const ca = fs.readFileSync(path.join(d.dir, "pki/ca.crt"), "utf8");
  for (let i = 0; i < 5 * MAX; i++) (await eventually(() => helloed(d, ca), `connection ${i + 1}`)).destroy();
  expect(
    await eventually(async () => {
      const h = await healthz(d);
      if (h.status !== 200) throw new Error(h.body);
      return h.body;
    }, "/healthz ok"),
  ).toMatch(/^ok /);

  const echo = await echoServer();
  const { host, code } = await share(d, echo.port);
  const { guest, local } = await joinApproved(d, host, code, "late");
  const payload = Buffer.from("a guest after many connections");
  expect((await roundTrip(local, payload)).equals(payload)).toBe(true);
  // Once the stream's close is logged its two data connections are gone: nothing else closes below.
  await eventually(async () => {
    if (!d.audit().some((e) => e.event === "stream.close")) throw new Error("no stream.close yet");
  }, "the stream's close");

  const held: tls.TLSSocket[] = [];
  while (held.length < MAX) {
    const s = await helloed(d, ca).catch(() => undefined);
    if (!s) break;
    held.push(s);
  }
  const full = await healthz(d);
  expect(full.status).toBe(503);
  expect(full.body).toContain(`all ${MAX} connection slots are in use (--max-connections)`);
  await expect(helloed(d, ca)).rejects.toThrow();
  for (const s of held) s.destroy();
  await eventually(async () => {
    const h = await healthz(d);
    if (h.status !== 200) throw new Error(h.body);
  }, "/healthz ok once the slots are free");
  expect((await roundTrip(local, payload)).equals(payload)).toBe(true);

  guest.kill("SIGINT");
  host.kill("SIGINT");
  await Promise.all([guest.exit(), host.exit()]);
});
