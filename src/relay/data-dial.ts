// Opens one data-plane connection to the coordinator and presents its stream token.
import net from "node:net";
import { DATA_MAGIC } from "./protocol.ts";

/**
 * Calls `ready` once connected and the preamble is written; the caller then wraps the socket in TLS.
 * `to` is the address the control connection already reached (see ControlClient.peer), so no stream
 * pays for a name lookup and every stream goes to the same coordinator as its control connection.
 */
export function dialData(to: { host: string; port: number }, token: string, ready: (raw: net.Socket) => void): net.Socket {
  // Bun's TLS only keeps half-close semantics when it wraps an already-connected socket.
  const raw = net.connect({ host: to.host, port: to.port, allowHalfOpen: true }, () => {
    raw.write(Buffer.concat([DATA_MAGIC, Buffer.from(token, "base64url")]));
    ready(raw);
  });
  raw.setNoDelay(true);
  return raw;
}
