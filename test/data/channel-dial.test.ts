// A session's data channel built from the real parts: both sides dial the coordinator's splice with
// their channel token, run end-to-end TLS 1.3 with the deployment's certificates and pin each other's
// key, then multiplex streams inside. The splice sees one connection per side and only ciphertext.
import { afterEach, describe, expect, test } from "bun:test";
import { collect } from "./mux-helpers.ts";
import { splicedChannel, testPki, type Leaf } from "./channel-helpers.ts";

const stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});

describe("a data channel through the splice, keys pinned", async () => {
  const pki = await testPki();
  const channel = (agentKey: Leaf, agentPins: string) => splicedChannel(pki, stops, { agentKey, agentPins });
  const { host, guest, stranger } = pki;

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
