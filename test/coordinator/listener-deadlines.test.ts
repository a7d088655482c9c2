// Issue 12 item 2: a control connection that only said hello is closed after the role deadline, a frame
// left half-sent is cut after the frame deadline, and one source address cannot hold more than its cap.
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import net from "node:net";
import type tls from "node:tls";
import { RefusedError } from "../../src/errors.ts";
import { FrameDecoder } from "../../src/wire/codec.ts";
import { ServerFrame } from "../../src/wire/protocol.ts";
import { closed, eventually, Live, within } from "./live.ts";

setDefaultTimeout(60_000);
let live: Live | undefined;
afterEach(async () => {
  await live?.close();
  live = undefined;
});

/** Everything the coordinator sends on `s` until it closes, as decoded frames. */
async function framesUntilClosed(s: tls.TLSSocket, what: string): Promise<ServerFrame[]> {
  const decoder = new FrameDecoder(ServerFrame);
  const frames: ServerFrame[] = [];
  s.on("data", (d: Buffer) => frames.push(...decoder.push(d)));
  await closed(s, what);
  return frames;
}

test("a connection that said hello and took no role is closed with the reason; a registered agent stays", async () => {
  live = await Live.start({ roleTimeoutMs: 2_000 });
  const agent = await live.dial(await live.enrolledHost());
  agent.send({ t: "register", shareId: "web", targets: ["127.0.0.1:22"], approver: true });
  await agent.next("registered");
  const idle = await live.dial();
  // The error frame rejects whatever the connection waits for.
  const err = await within(idle.next("pong"), "error frame on the idle connection").then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RefusedError);
  expect((err as RefusedError).code).toBe("timeout");
  expect((err as RefusedError).message).toContain(
    "closed after 2s without registering, asking for access or resuming a session",
  );
  // The agent has been connected longer than the idle one was, and still answers.
  agent.send({ t: "ping" });
  await agent.next("pong");
  agent.close();
});

test("a frame left half-sent is cut after the frame deadline, with an error frame saying so", async () => {
  live = await Live.start({ frameTimeoutMs: 300 });
  const s = await live.helloed();
  const head = Buffer.alloc(4);
  head.writeUInt32BE(1000);
  // A length prefix promising 1000 bytes, and 10 of them: the rest never comes.
  s.write(Buffer.concat([head, Buffer.from('{"t":"ping')]));
  const frames = await framesUntilClosed(s, "a connection holding half a frame");
  expect(frames[0]?.t).toBe("welcome");
  expect(frames.at(-1)).toMatchObject({ t: "error", code: "timeout", message: "a frame was left half-sent for 0.3s" });
});

test("a TLS handshake left half-done, and a connection that never says what it is, are cut after the handshake deadline", async () => {
  live = await Live.start({ handshakeTimeoutMs: 300 });
  const stalled = net.connect({ port: live.port, host: "127.0.0.1" });
  const silent = net.connect({ port: live.port, host: "127.0.0.1" });
  for (const s of [stalled, silent]) s.on("error", () => {});
  // The start of a ClientHello whose record promises 256 bytes: the TLS server waits for the rest.
  stalled.write(Buffer.from([0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03, 9, 9, 9]));
  await Promise.all([closed(stalled, "a half-done TLS handshake"), closed(silent, "a connection that sent nothing")]);
  const l = live;
  await eventually(async () => {
    if (l.coordinator.admission.open !== 0) throw new Error(`${l.coordinator.admission.open} slots still taken`);
  }, "both slots to come back");
});

test("one source address holds at most maxConnectionsPerAddress; other addresses are not affected", async () => {
  live = await Live.start({ maxConnectionsPerAddress: 3 });
  const l = live;
  const held = [await l.helloed(), await l.helloed(), await l.helloed()];
  await expect(l.helloed()).rejects.toThrow(/closed before the TLS handshake completed/);
  expect(l.coordinator.admission.fromSource("127.0.0.1")).toBe(3);
  const other = await l.helloed("127.0.0.2");
  held.shift()!.destroy();
  held.push(await eventually(() => l.helloed(), "a slot for 127.0.0.1 once one of its connections closed"));
  for (const s of [...held, other]) s.destroy();
});
