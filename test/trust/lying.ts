// Test-only tools for a coordinator that lies (never in the binary): a counting target, and a wrapper
// that rewrites every frame the real in-process coordinator sends.
import net from "node:net";
import type { Peer } from "../../src/coordinator/state.ts";
import type { ClientFrame, ServerFrame } from "../../src/wire/protocol.ts";
import type { Live } from "../coordinator/live.ts";

export const servers: net.Server[] = [];

/** A target that counts every connection and byte it gets: the impostor must get none. */
export async function target() {
  const t = { accepted: 0, bytes: 0, port: 0 };
  const s = net.createServer((c) => {
    t.accepted++;
    c.on("data", (d) => {
      t.bytes += d.length;
      c.write(d);
    });
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  t.port = (s.address() as net.AddressInfo).port;
  return t;
}

/** The lie: every frame the coordinator sends passes through `tamper`; every frame both ways is kept for the secret check. */
export function lying(l: Live, tamper: (f: ServerFrame, peer: Peer) => ServerFrame | undefined) {
  const seen: (ClientFrame | ServerFrame)[] = [];
  const broker = l.coordinator.broker;
  const handle = broker.handle.bind(broker);
  const wrapped = new WeakSet<Peer>();
  broker.handle = (peer: Peer, f: ClientFrame) => {
    seen.push(f);
    if (!wrapped.has(peer)) {
      wrapped.add(peer);
      const send = peer.ch.send.bind(peer.ch);
      (peer.ch as { send: (f: ServerFrame) => void }).send = (out) => {
        const t = tamper(out, peer);
        if (t) {
          seen.push(t);
          send(t);
        }
      };
    }
    return handle(peer, f);
  };
  return seen;
}
