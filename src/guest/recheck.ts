// A guest that lost the coordinator while its request waited asks a reconnected coordinator what became
// of it: after a restart the answer is a denial with the reason (and the code works again).
import { RefusedError, TesseraError } from "../errors.ts";
import { backoff, sleep } from "../wire/backoff.ts";
import { ControlClient, type DialOptions } from "../wire/control-client.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";

export async function recheckRequest(
  o: DialOptions,
  requestId: string,
  lost: Error,
): Promise<FrameOf<ServerFrame, "denied">> {
  for (let attempt = 0; attempt < 6; attempt++) {
    await sleep(backoff(attempt, 5_000));
    try {
      const c = await ControlClient.dial(o);
      c.send({ t: "recheck", requestId });
      const f = await c.next("denied");
      c.close();
      return f;
    } catch (err) {
      if (err instanceof RefusedError) throw new TesseraError("denied", `access denied: ${err.message}`);
    }
  }
  throw new TesseraError(
    "disconnected",
    `${lost.message} before the host answered, and could not get back to it; if the coordinator restarted, your code works again: run the same command`,
  );
}
