// Unit tests for the agent's side of a shared shell, against an in-process fake of the host's side
// speaking the real shell frames over a duplex pair.
import { afterEach, expect, test } from "bun:test";
import { duplexPair, type Duplex } from "node:stream";
import { encodeControl, encodeData, GuestControl, ShellDecoder } from "../../src/shell/frames.ts";
import { MAX_READ_BYTES, MAX_UNREAD_BYTES, ShellChannel } from "../../src/mcp/shell-channel.ts";

/** The host's end of one stream: records what the guest typed, says ready, prints, exits. */
class FakeHost {
  readonly typed: string[] = [];
  hello: unknown;
  private readonly decoder = new ShellDecoder(GuestControl);
  private helloSeen!: () => void;
  readonly greeted = new Promise<void>((r) => (this.helloSeen = r));

  constructor(readonly end: Duplex) {
    end.on("data", (chunk: Buffer) => {
      for (const f of this.decoder.push(chunk)) {
        if (f.t === "hello") {
          this.hello = f;
          this.helloSeen();
        } else if (f.t === "data") this.typed.push(f.data.toString());
      }
    });
  }

  ready(o: { readOnly?: boolean; recorded?: boolean } = {}): void {
    this.end.write(encodeControl({ t: "ready", v: 1, readOnly: !!o.readOnly, recorded: !!o.recorded }));
  }

  print(text: string | Buffer): void {
    for (const f of encodeData(Buffer.from(text))) this.end.write(f);
  }

  exit(code: number): void {
    this.end.write(encodeControl({ t: "exit", code, signal: null }));
    this.end.end();
  }
}

let hosts: FakeHost[] = [];
afterEach(() => {
  for (const h of hosts) h.end.destroy();
  hosts = [];
});

/** A channel whose every stream is a fresh duplex pair; `onStream` plays the host on each. */
async function channel(onStream: (h: FakeHost) => void | Promise<void>): Promise<ShellChannel> {
  return ShellChannel.open(async () => {
    const [guestEnd, hostEnd] = duplexPair();
    const h = new FakeHost(hostEnd);
    hosts.push(h);
    void h.greeted.then(() => onStream(h));
    return guestEnd;
  });
}

/** Resolves once the channel has `bytes` unread (the fake's writes are asynchronous). */
async function unread(c: ShellChannel, check: () => boolean): Promise<void> {
  while (!check()) await c.settle(5);
}

test("says hello as a program (no tty, TERM=dumb), waits for ready, types with a newline the caller added, reads plain text", async () => {
  const c = await channel((h) => h.ready({ recorded: true }));
  const h = hosts[0]!;
  expect(h.hello).toMatchObject({ t: "hello", tty: false, term: "dumb" });
  expect(c.recorded).toBe(true);
  await c.type("echo hi\n");
  await unread(c, () => h.typed.length > 0);
  expect(h.typed.join("")).toBe("echo hi\n");
  h.print("\x1b[32mhi\x1b[0m\r\n");
  let out = "";
  await unread(c, () => (out += c.read().text).includes("hi\n"));
  expect(out).toBe("hi\n");
});

test("output is handed out MAX_READ_BYTES at a time; past MAX_UNREAD_BYTES the oldest is dropped and counted", async () => {
  const c = await channel((h) => h.ready());
  const h = hosts[0]!;
  const chunk = "x".repeat(16 * 1024);
  const total = MAX_UNREAD_BYTES + 64 * 1024;
  for (let n = 0; n < total; n += chunk.length) h.print(chunk);
  h.print("END");
  let first: ReturnType<typeof c.read>;
  for (;;) {
    await c.settle(5);
    first = c.read();
    if (first.text.length || first.dropped) break;
  }
  // Everything the fake wrote may not have arrived by the first read; read on until the end marker.
  let seen = first.text.length;
  let dropped = first.dropped;
  expect(first.text.length).toBeLessThanOrEqual(MAX_READ_BYTES);
  for (let last = first; !last.text.endsWith("END"); ) {
    await c.settle(5);
    last = c.read();
    expect(last.text.length).toBeLessThanOrEqual(MAX_READ_BYTES);
    seen += last.text.length;
    dropped += last.dropped;
  }
  expect(dropped).toBeGreaterThan(0);
  expect(seen + dropped).toBe(total + 3);
});

test("a read-only shell refuses typing; an exit is reported and typing after it is refused", async () => {
  const ro = await channel((h) => h.ready({ readOnly: true }));
  await expect(ro.type("ls\n")).rejects.toThrow("read-only");

  const c = await channel((h) => {
    h.ready();
    h.print("bye\n");
    h.exit(3);
  });
  await c.settle(60_000);
  const out = c.read();
  expect(out.exit).toEqual({ code: 3, signal: null });
  expect(out.text).toBe("bye\n");
  await expect(c.type("ls\n")).rejects.toThrow("the remote shell has exited (status 3)");
});

test("a host that does not start with ready is refused; a dropped stream is opened again on the next use", async () => {
  await expect(channel((h) => h.print("surprise"))).rejects.toThrow('first shell frame was "data", not ready');

  let streams = 0;
  const c = await channel((h) => {
    streams++;
    h.ready();
    if (streams === 1) h.end.end();
  });
  await c.settle(60_000);
  expect(streams).toBe(1);
  await c.type("again\n");
  expect(streams).toBe(2);
  const h = hosts.at(-1)!;
  await unread(c, () => h.typed.length > 0);
  expect(h.typed).toEqual(["again\n"]);
});
