// In-process tests for src/data/direct-accept.ts with src/data/direct-dial.ts: the accepting end of a
// direct connection on loopback, the agent's TLS server role, keys from src/pki. A stream is handed over
// only to the connection with its token and the approved key; anything else is closed and the stream
// keeps waiting; a session's probe is answered once the keys check out.
import { afterEach, beforeAll, expect, test } from "bun:test";
import type { Socket } from "bun";
import { DirectAcceptor, type DirectWaiter } from "../../src/data/direct-accept.ts";
import { dialDirect, probeDirect } from "../../src/data/direct-dial.ts";
import type { End } from "../../src/data/pipe.ts";
import { probeToken } from "../../src/wire/hints.ts";
import { encodePreamble } from "../../src/wire/preamble.ts";
import { guestTlsOf, hostTls, makePki, newToken, signal, type Party, type Pki } from "./fixtures.ts";

let pki: Pki;
beforeAll(async () => {
  pki = await makePki();
});
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0).reverse()) f();
});

/** The guest's listener (`join`'s): it accepts as the TLS client; the agent dials and serves. */
function acceptor(isServer: boolean): { acc: DirectAcceptor; port: number } {
  const acc = new DirectAcceptor({
    tls: isServer ? hostTls(pki.host, pki.caPem) : guestTlsOf(pki.guest, pki.caPem),
    isServer,
    peerRole: isServer ? "guest" : "host",
  });
  const port = acc.listen();
  cleanup.push(() => acc.stop());
  return { acc, port };
}

function waiter() {
  const taken = signal<Socket<End>>();
  const failed = signal<string>();
  const w: DirectWaiter = {
    take: (inner) => {
      cleanup.push(() => inner.terminate());
      taken.resolve(inner);
    },
    gone: () => false,
    fallback: () => failed.resolve("fallback"),
    fail: (why) => failed.resolve(why),
  };
  return { w, taken: taken.promise, failed: failed.promise };
}

/** The agent's side of a direct stream: it dials the guest and serves the TLS, holding `me`'s key. */
function agentDial(port: number, token: string, me: Party = pki.host) {
  return dialDirect({ host: "127.0.0.1", port }, token, {
    tls: hostTls(me, pki.caPem),
    isServer: true,
    peerRole: "guest",
    pin: { peerSpki: pki.guest.spki, checked: {} },
  }).then((c) => {
    cleanup.push(() => {
      c.inner.terminate();
      c.raw.terminate();
    });
    return c;
  });
}

test("the connection with the stream's token and the approved key takes the waiting stream", async () => {
  const { acc, port } = acceptor(false);
  const token = newToken();
  const { w, taken } = waiter();
  acc.expect(token, "st-1", { peerSpki: pki.host.spki, checked: {} }, w);
  const conn = await agentDial(port, token);
  const inner = await taken;
  // Bytes from the agent's side arrive on the stream the guest was waiting for.
  const got = signal<string>();
  inner.data.sink = { feed: (c) => got.resolve(Buffer.from(c).toString()), drained() {}, ended() {}, gone() {} };
  conn.inner.write("over the direct path");
  expect(await got.promise).toBe("over the direct path");
});

test("a dialler with another key is closed before it can take the stream, which still waits for the right one", async () => {
  const { acc, port } = acceptor(false);
  const token = newToken();
  const { w, taken } = waiter();
  let handed = 0;
  acc.expect(
    token,
    "st-2",
    { peerSpki: pki.host.spki, checked: {} },
    {
      ...w,
      take: (i) => {
        handed++;
        return w.take(i);
      },
    },
  );
  const wrong = agentDial(port, token, pki.other);
  await expect(wrong).rejects.toThrow();
  expect(handed).toBe(0);
  await agentDial(port, token);
  await taken;
  expect(handed).toBe(1);
});

test("bytes that are not a preamble, or a preamble with data a TLS server would not send, are cut", async () => {
  const { port } = acceptor(false);
  for (const bytes of [
    Buffer.from("GET / HTTP/1.1\r\n\r\n"),
    Buffer.concat([encodePreamble(newToken()), Buffer.from("x")]),
  ]) {
    const closed = signal<void>();
    const sock = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: { data() {}, close: () => closed.resolve(), error() {} },
    });
    cleanup.push(() => sock.terminate());
    sock.write(bytes);
    await closed.promise;
  }
});

test("a session's probe is answered once the keys check out, refused to another key; stop() fails who waits", async () => {
  const { acc, port } = acceptor(true);
  acc.allowProbe(probeToken("sess-1"), { peerSpki: pki.guest.spki, checked: {} });
  const opts = (me: Party) => ({
    tls: guestTlsOf(me, pki.caPem),
    isServer: false,
    peerRole: "host",
    pin: { peerSpki: pki.host.spki, checked: {} },
  });
  await probeDirect({ host: "127.0.0.1", port }, "sess-1", opts(pki.guest));
  await expect(probeDirect({ host: "127.0.0.1", port }, "sess-1", opts(pki.other))).rejects.toThrow();
  // Stopping the listener (the session's end) fails every stream still waiting for its connection.
  acc.forbidProbe(probeToken("sess-1"));
  const { w, failed } = waiter();
  acc.expect(newToken(), "st-3", { peerSpki: pki.guest.spki, checked: {} }, w);
  acc.stop();
  expect(await failed).toBe("the session ended");
});
