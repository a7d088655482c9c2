// Issue 12 item 5: one host cannot take every share slot (a per-host cap, also under racing registrations),
// and each share cap's refusal names the cap and the flag that sets it.
import { afterEach, expect, test } from "bun:test";
import { refusal, TARGET, World } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

test("maxSharesPerHost: a host's share past the cap is refused naming the cap; other hosts still register", async () => {
  w = await World.open({ maxSharesPerHost: 2 });
  const agent = await w.agent("one");
  await w.send(agent, { t: "register", shareId: "two", targets: [TARGET], approver: true });
  const err = await refusal(w.send(agent, { t: "register", shareId: "three", targets: [TARGET], approver: true }));
  expect(err.code).toBe("limit");
  expect(err.message).toContain(`host "box" already holds 2 shares, the per-host cap`);
  expect(err.message).toContain("--max-shares-per-host");
  // Coming back to a share it holds is not a new share.
  const twin = await w.hello(w.peer({ host: agent.host }));
  w.broker.drop(agent);
  await w.send(twin, { t: "register", shareId: "one", targets: [TARGET], approver: true });
  expect(twin.ch.of("registered").map((f) => f.shareId)).toEqual(["one"]);
  await w.agent("elsewhere", [TARGET], "other-box");
  expect(
    w
      .events()
      .filter((e) => e.event === "share.open")
      .map((e) => e.shareId),
  ).toEqual(["one", "two", "elsewhere"]);
});

test("maxSharesPerHost holds when one host registers many shares at once over many connections", async () => {
  w = await World.open({ maxSharesPerHost: 3 });
  const first = await w.agent("s0");
  const links = await Promise.all(Array.from({ length: 12 }, () => w.hello(w.peer({ host: first.host }))));
  const results = await Promise.allSettled(
    links.map((p, i) => w.send(p, { t: "register", shareId: `s${i + 1}`, targets: [TARGET], approver: true })),
  );
  expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(2);
  expect(w.events().filter((e) => e.event === "share.open")).toHaveLength(3);
});

test("maxCodesPerShare: the refusal names the per-share cap and its flag", async () => {
  w = await World.open({ maxCodesPerShare: 1 });
  const agent = await w.agent();
  await w.mint(agent);
  const err = await refusal(w.send(agent, { t: "mint", shareId: "web" }));
  expect(err.code).toBe("limit");
  expect(err.message).toContain("1 unused codes, the per-share cap");
  expect(err.message).toContain("--max-codes-per-share");
});

test("peersWithRole: agents, approvers, waiting guests and session guests have a role; a bare or denied connection has none", async () => {
  w = await World.open();
  const agent = await w.agent();
  const { guest } = await w.session(agent);
  const waiting = await w.guest("waiting");
  await w.redeem(waiting, await w.mint(agent));
  const bare = await w.hello(w.peer());
  let busy = w.broker.peersWithRole();
  expect([agent, guest, waiting.peer].every((p) => busy.has(p))).toBe(true);
  expect(busy.has(bare)).toBe(false);
  await w.send(agent, { t: "decision", requestId: waiting.peer.ch.of("pending")[0]!.requestId, allow: false });
  busy = w.broker.peersWithRole();
  expect(busy.has(waiting.peer)).toBe(false);
  expect(busy.has(agent)).toBe(true);
});
