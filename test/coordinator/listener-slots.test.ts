// Issue 12 item 1: every connection gives its slot back when it closes, whatever it turned out to be, and
// /healthz answers 503 with the reason while the coordinator cannot take a new connection.
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import net from "node:net";
import { randomBytes } from "node:crypto";
import { DATA_MAGIC, STREAM_TOKEN_BYTES } from "../../src/wire/protocol.ts";
import { closed, eventually, Live } from "./live.ts";

setDefaultTimeout(60_000);
let live: Live | undefined;
afterEach(async () => {
  await live?.close();
  live = undefined;
});

/** A raw TCP connection that sends `bytes` and waits for the coordinator to close it. */
async function refusedBytes(port: number, bytes: Buffer): Promise<void> {
  const s = net.connect({ port, host: "127.0.0.1" });
  s.on("error", () => {});
  s.write(bytes);
  await closed(s, `a connection that sent ${bytes.subarray(0, 4).toString("hex")}...`);
}

test("slots come back: 3x maxConnections control connections one after another, then a new one still works and /healthz says ok", async () => {
  live = await Live.start({ maxConnections: 4 });
  const l = live;
  for (let i = 0; i < 12; i++) {
    // Retried only while the previous close is still on its way to the coordinator.
    const c = await eventually(() => l.dial(), `control connection ${i + 1} of 12 (maxConnections 4)`);
    c.close();
  }
  // The other shapes a connection can take each give their slot back too.
  await refusedBytes(l.port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00])); // an empty ClientHello
  await refusedBytes(l.port, Buffer.concat([DATA_MAGIC, randomBytes(STREAM_TOKEN_BYTES)])); // an unknown stream token
  await refusedBytes(l.port, Buffer.from("GET / HTTP/1.1\r\n\r\n")); // not ours at all
  await eventually(async () => {
    if (l.coordinator.admission.open !== 0) throw new Error(`${l.coordinator.admission.open} slots still taken`);
  }, "every slot to come back");
  const c = await l.dial();
  c.send({ t: "ping" });
  await c.next("pong");
  expect(await l.healthz()).toEqual({ status: 200, body: "ok test\n" });
  c.close();
});

test("/healthz answers 503 naming the cap while every slot is taken, and ok again once one is free", async () => {
  live = await Live.start({ maxConnections: 3 });
  const l = live;
  const held = [await l.dial(), await l.dial(), await l.dial()];
  const full = await l.healthz();
  expect(full.status).toBe(503);
  expect(full.body).toContain("all 3 connection slots are in use (--max-connections)");
  await expect(l.dial()).rejects.toThrow(/cannot reach the coordinator/);
  held.shift()!.close();
  await eventually(async () => {
    const h = await l.healthz();
    if (h.status !== 200) throw new Error(h.body);
  }, "/healthz to say ok");
  held.push(await l.dial());
  for (const c of held) c.close();
});
