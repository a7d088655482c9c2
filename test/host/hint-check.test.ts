// The agent's deny list and cap for direct-path hints: a guest cannot use the agent to scan the host's network.
import { describe, expect, test } from "bun:test";
import { checkHints, hintRefusal, isLoopbackAddr, MAX_HINTS_DIALLED } from "../../src/host/hint-check.ts";

const h = (host: string, port = 40000) => ({ host, port });

describe("hint deny list", () => {
  test.each([
    ["169.254.169.254", "link-local"],
    ["169.254.1.1", "link-local"],
    ["fe80::1", "link-local"],
    ["fd00:ec2::254", "metadata"],
    ["100.100.100.200", "metadata"],
    ["::ffff:169.254.169.254", "link-local"],
    ["0.0.0.0", "unspecified"],
    ["::", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast"],
    ["255.255.255.255", "broadcast"],
    ["ff02::1", "multicast"],
    ["localhost", "not an IP"],
    ["example.com", "not an IP"],
  ])("%s is refused (%s)", (host, what) => {
    expect(hintRefusal(h(host), true)).toContain(what);
  });

  test("loopback only when the guest itself is on loopback", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "::1"]) {
      expect(hintRefusal(h(host), false)).toContain("loopback");
      expect(hintRefusal(h(host), true)).toBeUndefined();
    }
  });

  test("private and public ranges are allowed (an office or a VPN is the point)", () => {
    for (const host of [
      "10.1.2.3",
      "172.16.0.5",
      "192.168.1.20",
      "100.64.0.1",
      "fd12:3456::1",
      "203.0.113.7",
      "2001:db8::1",
    ]) {
      expect(hintRefusal(h(host), false)).toBeUndefined();
    }
  });

  test("bad ports are refused", () => {
    expect(hintRefusal(h("10.0.0.1", 0), false)).toBe("not a port");
    expect(hintRefusal(h("10.0.0.1", 70000), false)).toBe("not a port");
  });
});

describe("hint cap", () => {
  test("1,000 hints: at most the cap is dialled, the rest counted", () => {
    const hints = Array.from({ length: 1000 }, (_, i) => h(`10.0.${i >> 8}.${i & 255}`, 40000 + (i % 7)));
    const v = checkHints(hints, { guestOnLoopback: false });
    expect(v.dial.length).toBe(MAX_HINTS_DIALLED);
    expect(v.offered).toBe(1000);
    expect(v.over).toBe(1000 - MAX_HINTS_DIALLED - v.refused.length);
    // 10.0.0.0 is a valid private address; nothing here is refused.
    expect(v.refused.length).toBe(0);
  });

  test("forbidden hints never count as dialled, and repeats are dialled once", () => {
    const v = checkHints([h("169.254.169.254"), h("127.0.0.1"), h("10.0.0.1"), h("10.0.0.1"), h("224.0.0.1")], {
      guestOnLoopback: false,
    });
    expect(v.dial).toEqual([h("10.0.0.1")]);
    expect(v.refused.map((r) => r.hint.host)).toEqual(["169.254.169.254", "127.0.0.1", "224.0.0.1"]);
    expect(v.over).toBe(1);
  });

  test("the cap holds whatever the mix", () => {
    const hints = [
      ...Array.from({ length: 500 }, (_, i) => h("169.254.0.1", 1 + i)),
      ...Array.from({ length: 500 }, (_, i) => h("192.168.0.1", 1 + i)),
    ];
    const v = checkHints(hints, { guestOnLoopback: false, cap: 3 });
    expect(v.dial.length).toBe(3);
    expect(v.refused.length).toBe(500);
    expect(v.over).toBe(497);
  });
});

test("the guest's address as the coordinator reports it", () => {
  expect(isLoopbackAddr("127.0.0.1:5123")).toBe(true);
  expect(isLoopbackAddr("::1:5123")).toBe(true);
  expect(isLoopbackAddr("::ffff:127.0.0.1:5123")).toBe(true);
  expect(isLoopbackAddr("10.0.0.5:5123")).toBe(false);
  expect(isLoopbackAddr("203.0.113.7:5123")).toBe(false);
});
