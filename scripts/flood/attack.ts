// The flood's hostile side: TLS control connections to a loopback coordinator from chosen loopback source
// addresses (all of 127/8 is local on Linux), made in bounded batches, each with its own time limit.
import net from "node:net";
import tls from "node:tls";
import { encodeFrame } from "../../src/wire/codec.ts";
import { MAX_FRAME_BYTES, PROTOCOL_VERSION } from "../../src/wire/protocol.ts";

export interface Target {
  port: number;
  ca: string;
}

const CONNECT_MS = 10_000;

function connect(t: Target, localAddress: string): tls.TLSSocket {
  // localAddress is a net option tls.connect passes on (its typings leave it out).
  const s = tls.connect({
    host: "127.0.0.1",
    port: t.port,
    localAddress,
    ca: t.ca,
    servername: "localhost",
    minVersion: "TLSv1.3",
  } as tls.ConnectionOptions);
  s.on("error", () => {});
  return s;
}

/** One TLS handshake, then close: true when the handshake completed, false when refused, reset or late. */
export function handshake(t: Target, localAddress: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(t, localAddress);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), CONNECT_MS);
    s.once("secureConnect", () => done(true));
    s.once("close", () => done(false));
  });
}

export interface Held {
  sock: tls.TLSSocket;
  /** Resolves with the time the coordinator (or anyone) closed the connection. */
  closed: Promise<number>;
}

/**
 * A connection that completes TLS, says hello and gets its welcome, then stays silent; with `halfFrame`,
 * it first sends a length prefix for a maximal frame and all but a few bytes of its body. Undefined when refused.
 */
export function hold(t: Target, localAddress: string, halfFrame = false): Promise<Held | undefined> {
  return new Promise((resolve) => {
    const s = connect(t, localAddress);
    const timer = setTimeout(() => s.destroy(), CONNECT_MS);
    // Refused before the welcome: undefined (a later resolve does nothing once the socket was handed out).
    const closed = new Promise<number>((r) =>
      s.once("close", () => {
        clearTimeout(timer);
        resolve(undefined);
        r(Date.now());
      }),
    );
    s.once("secureConnect", () => s.write(encodeFrame({ t: "hello", v: PROTOCOL_VERSION, client: "flood" })));
    s.once("data", () => {
      clearTimeout(timer);
      if (halfFrame) {
        const head = Buffer.alloc(4);
        head.writeUInt32BE(MAX_FRAME_BYTES);
        s.write(Buffer.concat([head, Buffer.alloc(MAX_FRAME_BYTES - 16, 0x20)]));
      }
      resolve({ sock: s, closed });
    });
    // Keep reading so a close by the coordinator is seen; its error frame is not needed.
    s.on("data", () => {});
  });
}

/** The start of a ClientHello whose record promises 256 bytes: a TLS server waits for the rest. */
const PARTIAL_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03, 9, 9, 9]);

/** A TCP connection that starts a TLS handshake and stalls; undefined when refused before it connected. */
export function stall(t: Target, localAddress: string): Promise<Held | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port: t.port, localAddress });
    s.on("error", () => {});
    s.on("data", () => {});
    const closed = new Promise<number>((r) =>
      s.once("close", () => {
        resolve(undefined);
        r(Date.now());
      }),
    );
    s.once("connect", () => {
      s.write(PARTIAL_HELLO);
      resolve({ sock: s as tls.TLSSocket, closed });
    });
  });
}

/** Runs task(0..n-1) with at most `width` in flight at once. */
export async function pool<T>(n: number, width: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
  return out;
}

/** Source addresses for `n` connections, `per` to an address, from 127.<block>.x.y. */
export function sources(block: number, n: number, per: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    const a = Math.floor(i / per) + 1;
    return `127.${block}.${a >> 8}.${a & 255}`;
  });
}
