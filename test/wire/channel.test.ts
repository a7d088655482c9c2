// Unit tests for src/wire/channel.ts on a real loopback socket: frames that arrived before a peer's bad
// bytes are handled, then that peer alone gets an error frame and its connection closed.
import { expect, test } from "bun:test";
import net from "node:net";
import { Channel } from "../../src/wire/channel.ts";
import { encodeFrame, FrameDecoder } from "../../src/wire/codec.ts";
import { ClientFrame, ServerFrame, type ClientFrame as In, type ServerFrame as Out } from "../../src/wire/protocol.ts";

test("whole frames sent with bad bytes in one write are handled, then the peer gets an error frame and is closed", async () => {
  const handled: In[] = [];
  let closedWith: Error | undefined;
  const closed = Promise.withResolvers<void>();
  const server = net.createServer((sock) => {
    new Channel<In, Out>(sock, ClientFrame, {
      onFrame: (f) => void handled.push(f),
      onClose: (err) => {
        closedWith = err;
        closed.resolve();
      },
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as net.AddressInfo;
  const client = net.connect(port, "127.0.0.1");
  const got: Out[] = [];
  const decoder = new FrameDecoder(ServerFrame);
  const ended = Promise.withResolvers<void>();
  client.on("data", (c: Buffer) => got.push(...decoder.push(c)));
  client.on("close", () => ended.resolve());
  const bad = Buffer.from([0, 0, 0, 4, 0x7b, 0x6e, 0x6f, 0x21]); // "{no!": not JSON
  client.write(Buffer.concat([encodeFrame({ t: "recheck", requestId: "r1" }), encodeFrame({ t: "pong" }), bad]));
  await Promise.all([closed.promise, ended.promise]);
  server.close();
  expect(handled).toEqual([{ t: "recheck", requestId: "r1" }, { t: "pong" }]);
  expect(closedWith?.message).toBe("frame is not valid JSON");
  expect(got).toEqual([{ t: "error", code: "bad_frame", message: "frame is not valid JSON" }]);
});
