// Opens one data-plane connection to the coordinator and presents its stream token.
import net from "node:net";
import { splitAddress } from "./client.ts";
import { DATA_MAGIC } from "./protocol.ts";

/** Calls `ready` once connected and the preamble is written; the caller then wraps the socket in TLS. */
export function dialData(address: string, token: string, ready: (raw: net.Socket) => void): net.Socket {
  const { host, port } = splitAddress(address);
  // Bun's TLS only keeps half-close semantics when it wraps an already-connected socket.
  const raw = net.connect({ host, port, allowHalfOpen: true }, () => {
    raw.write(Buffer.concat([DATA_MAGIC, Buffer.from(token, "base64url")]));
    ready(raw);
  });
  raw.setNoDelay(true);
  return raw;
}
