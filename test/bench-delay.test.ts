// The benchmark's delayed-link forwarder (scripts/bench/delay.ts) must carry bytes intact, in order and
// both ways, and pass a half-close on, or the delayed-link figures measure a broken link.
import { afterAll, expect, test } from "bun:test";
import net from "node:net";
import path from "node:path";

const servers: net.Server[] = [];
const children: import("bun").Subprocess[] = [];
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await Promise.all(children.map((c) => c.exited));
  for (const s of servers) s.close();
});

test("delay.ts forwards both ways intact and passes the client's FIN on", async () => {
  // An echo server that also says when the client's FIN reached it.
  let sawEnd!: () => void;
  const ended = new Promise<void>((r) => (sawEnd = r));
  const server = net.createServer((c) => {
    c.on("data", (d) => c.write(d));
    c.on("end", () => {
      sawEnd();
      c.end();
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const to = (server.address() as net.AddressInfo).port;

  const child = Bun.spawn(
    ["bun", path.resolve(import.meta.dir, "../scripts/bench/delay.ts"), "--to", String(to), "--delay", "2"],
    { stdout: "pipe", stderr: "inherit" },
  );
  children.push(child);
  const reader = (child.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  while (!/port \d+/.test(out)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`delay.ts exited before it listened: ${out}`);
    out += new TextDecoder().decode(value);
  }
  const port = Number(out.match(/port (\d+)/)![1]);

  const sent = Buffer.alloc(3 << 20);
  for (let i = 0; i < sent.length; i++) sent[i] = (i * 31 + (i >> 10)) & 0xff;
  const got: Buffer[] = [];
  const c = net.connect(port, "127.0.0.1");
  const closed = new Promise<void>((r) => c.on("close", () => r()));
  c.on("data", (d: Buffer) => got.push(d));
  // More than the forwarder's 1 MiB queue bound, in pieces: its pause and resume are on the way.
  for (let off = 0; off < sent.length; off += 64 * 1024) c.write(sent.subarray(off, off + 64 * 1024));
  c.end();
  await ended;
  await closed;
  expect(Buffer.concat(got).equals(sent)).toBe(true);
});
