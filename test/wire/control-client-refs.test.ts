// A refusal that names a ref answers only that ref: a waiting `next()` is not rejected by it (the host's
// live view polls status while a mint may be waiting for its code on the same connection).
import { afterEach, expect, test } from "bun:test";
import { Live } from "../coordinator/live.ts";

let live: Live | undefined;
afterEach(async () => {
  await live?.close();
  live = undefined;
});

test("a refused status poll with a ref does not reject a mint waiting on the same connection", async () => {
  live = await Live.start();
  const id = await live.enrolledHost("box");
  const c = await live.dial(id);
  c.send({ t: "register", shareId: "web", targets: ["127.0.0.1:9"], approver: true });
  await c.next("registered");
  const code = c.next("code");
  c.send({ t: "status", shareId: "gone", ref: "live-view" });
  c.send({ t: "mint", shareId: "web" });
  expect((await code).shareId).toBe("web");
  c.close();
});
