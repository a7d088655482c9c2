// A session's data channel built from the real parts: both sides dial the coordinator's splice with
// their channel token, run end-to-end TLS 1.3 with the deployment's certificates and pin each other's
// key, then multiplex streams inside. The splice sees one connection per side and only ciphertext.
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { startChannel } from "../../src/data/channel-dial.ts";
import { connectData, TLS_1_3, type InnerTls } from "../../src/data/data-dial.ts";
import type { ChannelEnd } from "../../src/data/mux-connection.ts";
import { MuxChannel } from "../../src/data/mux.ts";
import { newEnd, PIPE_HANDLERS, type End } from "../../src/data/pipe.ts";
import { Splicer } from "../../src/coordinator/splice.ts";
import { socketTransport } from "../../src/data/mux-connection.ts";
import { createCA, exportPrivateKeyPem, generateKeyPair, issueCert, spkiFingerprint } from "../../src/pki/index.ts";
import { PREAMBLE_BYTES } from "../../src/wire/protocol.ts";
import { collect } from "./mux-helpers.ts";

const stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});

async function leaf(ca: { certPem: string; keyPem: string }, name: string) {
  const keys = await generateKeyPair();
  const keyPem = await exportPrivateKeyPem(keys.privateKey);
  const certPem = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    publicKey: keys.publicKey,
    commonName: name,
    dnsNames: [name],
    usage: "both",
    now: new Date(),
    validForSeconds: 3600,
  });
  return { keyPem, certPem, spki: spkiFingerprint(certPem) };
}

/** The coordinator's data plane alone: the real Splicer behind a listener that reads each preamble. */
function relay(splicer: Splicer, seen: Buffer[] = []): number {
  type Sniff = End & { head?: Buffer; sniffed?: boolean };
  const l = Bun.listen<Sniff>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      ...(PIPE_HANDLERS as object),
      open(s) {
        s.data = newEnd() as Sniff;
      },
      data(s, chunk) {
        if (s.data.sniffed) {
          seen.push(Buffer.from(chunk));
          return PIPE_HANDLERS.data!(s, chunk);
        }
        s.data.head = s.data.head ? Buffer.concat([s.data.head, chunk]) : Buffer.from(chunk);
        if (s.data.head.length < PREAMBLE_BYTES) return;
        s.data.sniffed = true;
        splicer.accept(s, s.data.head);
      },
    },
  });
  stops.push(() => l.stop(true));
  return l.port;
}

describe("a data channel through the splice, keys pinned", async () => {
  const ca = await createCA({ commonName: "test CA", now: new Date() });
  const host = await leaf(ca, "host");
  const guest = await leaf(ca, "guest");
  const stranger = await leaf(ca, "stranger");
  const agentTls = (k: typeof host) =>
    ({
      key: k.keyPem,
      cert: k.certPem,
      ca: ca.certPem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: TLS_1_3,
    }) as InnerTls;
  const guestTls = {
    key: guest.keyPem,
    cert: guest.certPem,
    ca: ca.certPem,
    rejectUnauthorized: false,
    minVersion: TLS_1_3,
  } as InnerTls;

  /** Both ends dial the splice; resolves with each side's verdict. */
  async function channel(agentKey: typeof host, agentPins: string) {
    const spliced: string[] = [];
    const splicer = new Splicer({ onSpliced: (s) => spliced.push(s.id), onClosed() {} }, 5_000);
    const seen: Buffer[] = [];
    const port = relay(splicer, seen);
    const { guestToken, agentToken } = splicer.create("ch1", "s1");
    const side = (token: string, isServer: boolean, tls: InnerTls, peerSpki: string, role: "opener" | "acceptor") =>
      new Promise<{ mux?: MuxChannel; sock?: Socket<ChannelEnd>; why?: string }>((resolve) => {
        void connectData({ host: "127.0.0.1", port }).then((raw) => {
          stops.push(() => raw.terminate());
          startChannel(raw, {
            token,
            tls,
            isServer,
            peerRole: isServer ? "guest" : "host",
            peerSpki,
            checked: {},
            onVerified(inner) {
              const mux = new MuxChannel(socketTransport(inner), { role });
              inner.data.mux = mux;
              stops.push(() => inner.terminate());
              resolve({ mux, sock: inner });
            },
            onRejected: (why) => resolve({ why }),
          });
        });
      });
    const [g, a] = await Promise.all([
      side(guestToken, false, guestTls, host.spki, "opener"),
      side(agentToken, true, agentTls(agentKey), agentPins, "acceptor"),
    ]);
    return { g, a, spliced, seen };
  }

  test("one spliced TLS 1.3 connection carries many streams, byte-exact", async () => {
    const { g, a, spliced, seen } = await channel(host, guest.spki);
    expect(g.why).toBeUndefined();
    expect(a.why).toBeUndefined();
    expect(spliced).toEqual(["ch1"]);
    // 200 streams, each answered with its own bytes reversed.
    const answers: Promise<boolean>[] = [];
    for (let id = 1; id <= 200; id++) {
      const far = a.mux!.accept(id)!;
      const got = collect(far);
      void got.then((req) => {
        far.write(Buffer.from(req).reverse());
        far.end();
      });
      const near = g.mux!.open(id);
      const req = Buffer.from(`stream ${id} `.repeat(id));
      const reply = collect(near);
      near.write(req);
      near.end();
      answers.push(reply.then((r) => r.equals(Buffer.from(req).reverse())));
    }
    expect((await Promise.all(answers)).every(Boolean)).toBe(true);
    // The relay carried it all and read none of it.
    const relayed = Buffer.concat(seen);
    expect(relayed.length).toBeGreaterThan(200 * 100);
    expect(relayed.includes("stream 17 stream 17")).toBe(false);
  });

  test("the guest refuses a host whose key is not the approved one", async () => {
    const { g } = await channel(stranger, guest.spki);
    expect(g.why).toMatch(/host's key is not the one this session was approved for/);
  });

  test("the agent refuses a guest whose key is not the approved one", async () => {
    const { a } = await channel(host, stranger.spki);
    expect(a.why).toMatch(/guest's key is not the one this session was approved for/);
  });
});
