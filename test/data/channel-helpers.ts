// A session's data channel from the real parts, for tests: a CA and leaf certificates, the coordinator's
// Splicer behind a listener that reads each preamble, and both ends dialling it with their channel token,
// running end-to-end TLS 1.3 and pinning each other's key.
import type { Socket } from "bun";
import { connectData, TLS_1_3, type InnerTls } from "../../src/data/data-dial.ts";
import { channelOver } from "../../src/data/channel-socket.ts";
import type { MuxChannel, MuxOptions } from "../../src/data/mux.ts";
import { startVerified } from "../../src/data/verified-stream.ts";
import { newEnd, PIPE_HANDLERS, type End } from "../../src/data/pipe.ts";
import { Splicer } from "../../src/coordinator/splice.ts";
import { createCA, exportPrivateKeyPem, generateKeyPair, issueCert, spkiFingerprint } from "../../src/pki/index.ts";
import { PREAMBLE_BYTES } from "../../src/wire/protocol.ts";

export interface Leaf {
  keyPem: string;
  certPem: string;
  spki: string;
}

export async function testPki() {
  const ca = await createCA({ commonName: "test CA", now: new Date() });
  const leaf = async (name: string): Promise<Leaf> => {
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
  };
  return { ca, host: await leaf("host"), guest: await leaf("guest"), stranger: await leaf("stranger") };
}
export type TestPki = Awaited<ReturnType<typeof testPki>>;

/** The coordinator's data plane alone: the real Splicer behind a listener that reads each preamble. */
function relay(splicer: Splicer, seen: Buffer[], stops: (() => void)[]): number {
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

export interface ChannelSide {
  mux?: MuxChannel;
  sock?: Socket<End>;
  why?: string;
}

/** Both ends dial the splice (the agent holding `agentKey` and pinning `agentPins`); each side's verdict. */
export async function splicedChannel(
  pki: TestPki,
  stops: (() => void)[],
  o: { agentKey?: Leaf; agentPins?: string; acceptor?: Partial<MuxOptions> } = {},
) {
  const agentKey = o.agentKey ?? pki.host;
  const spliced: string[] = [];
  const splicer = new Splicer({ onSpliced: (s) => spliced.push(s.id), onClosed() {} }, 5_000);
  const seen: Buffer[] = [];
  const port = relay(splicer, seen, stops);
  const { stream: splice, guestToken, agentToken } = splicer.create("ch1", "s1");
  const agentTls = {
    key: agentKey.keyPem,
    cert: agentKey.certPem,
    ca: pki.ca.certPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: TLS_1_3,
  } as InnerTls;
  const guestTls = {
    key: pki.guest.keyPem,
    cert: pki.guest.certPem,
    ca: pki.ca.certPem,
    rejectUnauthorized: false,
    minVersion: TLS_1_3,
  } as InnerTls;
  const side = (token: string, isServer: boolean, tls: InnerTls, peerSpki: string, role: "opener" | "acceptor") =>
    new Promise<ChannelSide>((resolve) => {
      void connectData({ host: "127.0.0.1", port }).then((raw) => {
        stops.push(() => raw.terminate());
        startVerified(raw, {
          token,
          tls,
          isServer,
          peerRole: isServer ? "guest" : "host",
          peerSpki,
          checked: {},
          onVerified(inner) {
            // The product's own binding of a verified socket to a channel (guest and agent use it).
            const mux = channelOver(inner, isServer ? "guest" : "host", {
              role,
              ...(role === "acceptor" ? o.acceptor : {}),
            });
            stops.push(() => inner.terminate());
            resolve({ mux, sock: inner });
          },
          onRejected: (why) => resolve({ why }),
          // Closed before its own handshake said anything (the other end refused first).
          onClose: () =>
            resolve({ why: `the ${isServer ? "guest" : "host"} closed the channel before its TLS handshake finished` }),
        });
      });
    });
  const [g, a] = await Promise.all([
    side(guestToken, false, guestTls, pki.host.spki, "opener"),
    side(agentToken, true, agentTls, o.agentPins ?? pki.guest.spki, "acceptor"),
  ]);
  /** The coordinator cuts the channel (revoke, the session's end): its splice ends, both sockets close. */
  const cut = (reason: string) => splicer.end(splice, reason);
  return { g, a, spliced, seen, cut };
}
