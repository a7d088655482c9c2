// A coordinator started a moment ago (`tessera coordinator ... &` pasted with the lines after it) is given a
// few seconds to open its port: one "waiting" line, then the real dial, which reports what is still wrong.
import net from "node:net";
import { splitAddress } from "../wire/address.ts";

/** How long link, share and join wait for a refused port to open. */
export const STARTUP_WAIT_MS = 8_000;
const RETRY_MS = 200;

/** Resolves once host:port accepts a TCP connection, or after waitMs; only a refused port is waited for. */
export async function waitForCoordinator(
  address: string,
  say: (line: string) => void,
  waitMs = STARTUP_WAIT_MS,
): Promise<void> {
  let host: string;
  let port: number;
  try {
    ({ host, port } = splitAddress(address));
  } catch {
    return; // the dial reports a bad address in its own words
  }
  const deadline = Date.now() + waitMs;
  let said = false;
  for (;;) {
    const code = await probe(host, port);
    if (code !== "ECONNREFUSED") return;
    if (Date.now() >= deadline) return;
    if (!said) {
      say(`waiting for the coordinator at ${address} (nothing answers yet; it may be starting) ...`);
      said = true;
    }
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
}

/** Connects and closes at once: "ok", or the error's code. */
function probe(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setTimeout(2_000, () => {
      s.destroy();
      resolve("ETIMEDOUT");
    });
    s.once("connect", () => {
      s.destroy();
      resolve("ok");
    });
    s.once("error", (err: Error & { code?: string }) => resolve(err.code ?? "error"));
  });
}
