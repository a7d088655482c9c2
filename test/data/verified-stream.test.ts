// In-process tests for src/data/verified-stream.ts: agent and guest each dial a splice on loopback with
// their stream token and run the end-to-end TLS over it, with certificates from src/pki. Bytes flow only
// once each side holds the key it pinned; a swapped key, or a certificate of another CA, is refused.
import { afterEach, beforeAll, expect, test } from "bun:test";
import type { Socket } from "bun";
import { connectData } from "../../src/data/data-dial.ts";
import type { End } from "../../src/data/pipe.ts";
import { dialVerified, peerKeyIs, startVerified } from "../../src/data/verified-stream.ts";
import {
  Changes,
  guestTlsOf,
  hostTls,
  makePki,
  newToken,
  signal,
  TestSplice,
  type Party,
  type Pki,
} from "./fixtures.ts";

let pki: Pki;
beforeAll(async () => {
  pki = await makePki();
});
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0).reverse()) f();
});

type Outcome = { ok: true; inner: Socket<End> } | { ok: false; why: string };

/** One side of a stream: dials the splice and settles with its verdict; `closed` when its TLS socket closes. */
function side(
  splice: TestSplice,
  token: string,
  o: { isServer: boolean; me: Party; ca: string; pin: string; checked?: { checked?: Buffer } },
) {
  const verdict = signal<Outcome>();
  const closed = signal<void>();
  const got: Buffer[] = [];
  const changes = new Changes();
  const dialled = dialVerified(splice.address, {
    token,
    tls: o.isServer ? hostTls(o.me, o.ca) : guestTlsOf(o.me, o.ca),
    isServer: o.isServer,
    peerRole: o.isServer ? "guest" : "host",
    peerSpki: o.pin,
    checked: o.checked ?? {},
    onVerified: (inner) => {
      const feed = (c: Uint8Array) => {
        got.push(Buffer.from(c));
        changes.notify();
      };
      inner.data.sink = { feed, drained() {}, ended() {}, gone() {} };
      verdict.resolve({ ok: true, inner });
    },
    onRejected: (why) => verdict.resolve({ ok: false, why }),
    onClose: () => closed.resolve(),
  });
  void dialled.then((c) =>
    cleanup.push(() => {
      c.inner.terminate();
      c.raw.terminate();
    }),
  );
  const text = () => Buffer.concat(got).toString();
  return {
    verdict: verdict.promise,
    closed: closed.promise,
    text,
    received: (want: string) => changes.until(() => text() === want),
  };
}

function splice(): TestSplice {
  const s = new TestSplice();
  cleanup.push(() => s.stop());
  return s;
}

test("with each side pinning the other's key, both verify and bytes flow both ways", async () => {
  const sp = splice();
  const token = newToken();
  const checked: { checked?: Buffer } = {};
  const agent = side(sp, token, { isServer: true, me: pki.host, ca: pki.caPem, pin: pki.guest.spki });
  const guest = side(sp, token, { isServer: false, me: pki.guest, ca: pki.caPem, pin: pki.host.spki, checked });
  const [a, g] = await Promise.all([agent.verdict, guest.verdict]);
  if (!a.ok || !g.ok) throw new Error(`not verified: ${JSON.stringify([a, g])}`);
  // The certificate that passed is remembered for the session's next streams.
  expect(checked.checked).toBeInstanceOf(Buffer);
  g.inner.write("from the guest");
  a.inner.write("from the host");
  await Promise.all([agent.received("from the guest"), guest.received("from the host")]);
  expect([agent.text(), guest.text()]).toEqual(["from the guest", "from the host"]);
});

test("a guest that pins another key than the host's refuses the stream, and the agent's side closes", async () => {
  const sp = splice();
  const token = newToken();
  const agent = side(sp, token, { isServer: true, me: pki.host, ca: pki.caPem, pin: pki.guest.spki });
  const guest = side(sp, token, { isServer: false, me: pki.guest, ca: pki.caPem, pin: pki.other.spki });
  expect(await guest.verdict).toEqual({
    ok: false,
    why: "the host's key is not the one this session was approved for",
  });
  await agent.closed;
  expect(agent.text()).toBe("");
});

test("an agent refuses a guest whose key is not the approved one, even from the same CA", async () => {
  const sp = splice();
  const token = newToken();
  const agent = side(sp, token, { isServer: true, me: pki.host, ca: pki.caPem, pin: pki.guest.spki });
  const guest = side(sp, token, { isServer: false, me: pki.other, ca: pki.caPem, pin: pki.host.spki });
  expect(await agent.verdict).toEqual({
    ok: false,
    why: "the guest's key is not the one this session was approved for",
  });
  await guest.closed;
});

test("a certificate of another CA fails the agent's TLS; the remembered certificate grants nothing to another key", async () => {
  const sp = splice();
  const token = newToken();
  const agent = side(sp, token, { isServer: true, me: pki.host, ca: pki.caPem, pin: pki.stranger.spki });
  side(sp, token, { isServer: false, me: pki.stranger, ca: pki.caPem, pin: pki.host.spki });
  const v = await agent.verdict;
  expect(v.ok).toBe(false);
  expect((v as { why: string }).why).not.toContain("approved for");

  // peerKeyIs: a remembered certificate matches by its bytes; another one is parsed and checked in full.
  const der = (pem: string) => Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ""), "base64");
  const peer = (pem: string) => ({ getPeerX509Certificate: () => ({ raw: der(pem) }) });
  const fresh: { checked?: Buffer } = {};
  expect(peerKeyIs(peer(pki.guest.certPem), pki.guest.spki, fresh)).toBe(true);
  expect(fresh.checked).toEqual(der(pki.guest.certPem));
  expect(peerKeyIs(peer(pki.other.certPem), pki.guest.spki, fresh)).toBe(false);
  expect(peerKeyIs({ getPeerX509Certificate: () => undefined }, pki.guest.spki, fresh)).toBe(false);
});

test("starting a stream on a data connection that already closed fails with a plain error", async () => {
  const sp = splice();
  const raw = await connectData(sp.address);
  cleanup.push(() => raw.terminate());
  raw.terminate();
  await new Promise<void>((r) => (raw.data.closed ? r() : (raw.data.onClose = () => r())));
  expect(() =>
    startVerified(raw, {
      token: newToken(),
      tls: guestTlsOf(pki.guest, pki.caPem),
      isServer: false,
      peerRole: "host",
      peerSpki: pki.host.spki,
      checked: {},
      onVerified() {},
      onRejected() {},
    }),
  ).toThrow("the data connection closed before its token was ready");
});
