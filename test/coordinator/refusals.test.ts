// Issue 12 items 4 and 8: free refusals are audited as one counted line per address per window (no
// sync each, nothing lost at shutdown), and unknown, used and expired codes get one answer.
import { afterEach, describe, expect, spyOn, test } from "bun:test";
import { metrics } from "../../src/coordinator/metrics.ts";
import { OTHER_ADDRESSES } from "../../src/coordinator/refusals.ts";
import { INVALID_CODE } from "../../src/coordinator/consent.ts";
import { FAKE_PAKE, nameplateOf, refusal, until, World, type Guest } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

const ipOf = (g: Guest) => g.peer.addr.replace(/:\d+$/, "");
const reasons = (line: { [k: string]: unknown }) =>
  Object.fromEntries(
    String(line.reasons)
      .split(" ")
      .map((r) => r.split("="))
      .map(([k, n]) => [k, Number(n)]),
  );
const redeem = (g: Guest, code: string) =>
  w.send(g.peer, { t: "redeem", code: nameplateOf(code), csr: g.csr, name: g.name, reason: "", pake: FAKE_PAKE });

describe("refusals are counted, not synced one by one (item 4)", () => {
  test("a burst of rate-limited redemptions: no audit line each, one line with the count, written at shutdown", async () => {
    w = await World.open({ redeemPerMinute: 3 });
    const g = await w.guest("mallory");
    const before = w.events().length;
    const syncedAppend = spyOn(w.audit, "append");
    const codes: string[] = [];
    for (let i = 0; i < 200; i++) codes.push((await refusal(redeem(g, "ZZZZ-ZZZZ"))).code);
    expect(codes.slice(3)).toEqual(Array(197).fill("rate_limited"));
    // Nothing was written, let alone synced, on the refusals' path.
    expect(syncedAppend).not.toHaveBeenCalled();
    expect(w.events().length).toBe(before);
    syncedAppend.mockRestore();
    // Shutdown writes what the window held: one line for the address, with every attempt counted.
    await w.restart();
    const line = w.refusedLine(ipOf(g))!;
    expect(line).toMatchObject({ attempts: 200 });
    expect(reasons(line)).toEqual({ "redeem.rate_limited": 197, "redeem.unknown": 3 });
    expect(w.events().filter((e) => e.event === "refused")).toHaveLength(1);
  });

  test("the window's end writes one line per address by itself, and a later attempt starts a new window", async () => {
    w = await World.open({ refusalAuditWindowMs: 30 });
    const a = await w.guest("a");
    const b = await w.guest("b");
    await refusal(redeem(a, "ZZZZ-ZZZZ"));
    await refusal(redeem(a, "nope!"));
    await refusal(redeem(b, "ZZZZ-ZZZ1"));
    await until(() => w.events().filter((e) => e.event === "refused").length === 2, "the window's refused lines");
    expect(reasons(w.refusedLine(ipOf(a))!)).toEqual({ "redeem.unknown": 1, "redeem.bad_code": 1 });
    expect(w.refusedLine(ipOf(b))).toMatchObject({ attempts: 1, reasons: "redeem.unknown=1" });
    await refusal(redeem(a, "ZZZZ-ZZZ2"));
    await until(() => w.events().filter((e) => e.event === "refused").length === 3, "the next window's line");
  });

  test("addresses past maxRefusalAddresses are counted on one shared line, so no attempt goes unrecorded", async () => {
    w = await World.open({ maxRefusalAddresses: 2 });
    const guests = await Promise.all([1, 2, 3, 4, 5].map((n) => w.guest(`g${n}`)));
    for (const g of guests) await refusal(redeem(g, "ZZZZ-ZZZZ"));
    await w.restart();
    const lines = w.events().filter((e) => e.event === "refused");
    expect(lines.map((l) => l.addr)).toEqual([ipOf(guests[0]!), ipOf(guests[1]!), OTHER_ADDRESSES]);
    expect(lines.map((l) => l.attempts)).toEqual([1, 1, 3]);
  });

  test("enrolments refused for their token are counted in the address's line, with their reason and a metric", async () => {
    w = await World.open({ redeemPerMinute: 2 });
    const p = await w.hello(w.peer());
    const bad = `TSE1.00000000.${"x".repeat(32)}.${"0".repeat(64)}`;
    const counted = metrics.enrolFailures.value({ reason: "bad_token" });
    const enrol = () => w.send(p, { t: "enroll", token: bad, csr: "-----BEGIN x", name: "box" });
    expect((await refusal(enrol())).code).toBe("bad_token");
    expect((await refusal(enrol())).code).toBe("bad_token");
    expect((await refusal(enrol())).code).toBe("rate_limited");
    expect(metrics.enrolFailures.value({ reason: "bad_token" })).toBe(counted + 2);
    await w.restart();
    expect(reasons(w.refusedLine(p.addr.replace(/:\d+$/, ""))!)).toEqual({
      "enrol.bad_token": 2,
      "enrol.rate_limited": 1,
    });
  });
});

describe("no oracle on codes (item 8)", () => {
  test("unknown and expired codes get the same answer, naming neither the code nor a time; the audit line keeps which, the metrics count one series", async () => {
    w = await World.open({ codeTtlMs: 1 });
    const agent = await w.agent();
    const expired = await w.mint(agent);
    const expiresAt = agent.ch.of("code").at(-1)!.expiresAt;
    await until(() => Date.now() > expiresAt, "the code's expiry");
    const mallory = await w.guest("mallory");
    const was = metrics.redeemFailures.value({ reason: "invalid" });
    const answers = [await refusal(redeem(mallory, "ZZZZ-ZZZZ")), await refusal(redeem(mallory, expired))];
    const answersText = answers.map((e) => ({ code: e.code, message: e.message }));
    expect(answersText).toEqual([
      { code: "code_invalid", message: INVALID_CODE },
      { code: "code_invalid", message: INVALID_CODE },
    ]);
    expect(INVALID_CODE).not.toMatch(/\d{4}-\d{2}-\d{2}|ZZZZ/);
    // Issue 27: one series, so a scrape is no oracle the client's answer is not.
    expect(metrics.redeemFailures.value({ reason: "invalid" })).toBe(was + 2);
    expect(metrics.redeemFailures.value({ reason: "unknown" })).toBe(0);
    await w.restart();
    expect(reasons(w.refusedLine(ipOf(mallory))!)).toEqual({ "redeem.unknown": 1, "redeem.expired": 1 });
  });

  test("a used code gets that same answer too", async () => {
    w = await World.open();
    const agent = await w.agent();
    const code = await w.mint(agent);
    await w.redeem(await w.guest("alice"), code);
    const bob = await w.guest("bob");
    const err = await refusal(redeem(bob, code));
    expect({ code: err.code, message: err.message }).toEqual({ code: "code_invalid", message: INVALID_CODE });
    await w.restart();
    expect(w.refusedLine(ipOf(bob))).toMatchObject({ reasons: "redeem.used=1", shareIds: "web" });
  });
});
