// Unit tests for src/coordinator/admission.ts: slots given back once, the per-source cap, and how sources are keyed.
import { expect, test } from "bun:test";
import { Admission, sourceKey } from "../../src/coordinator/admission.ts";

test("a slot is given back once, however many closes report it", () => {
  const a = new Admission({ maxConnections: 2, maxConnectionsPerAddress: 10 });
  const s1 = a.admit("10.0.0.1")!;
  const s2 = a.admit("10.0.0.2")!;
  expect(a.admit("10.0.0.3")).toBeUndefined();
  expect(a.full()).toBe("all 2 connection slots are in use (--max-connections)");
  a.release(s1);
  a.release(s1);
  expect(a.open).toBe(1);
  expect(a.full()).toBeUndefined();
  expect(a.admit("10.0.0.3")).toBeDefined();
  a.release(s2);
  expect(a.open).toBe(1);
  // Each connection counts once among the closes that prompt a garbage collection.
  expect(a.takeClosed()).toBe(2);
  expect(a.takeClosed()).toBe(0);
});

test("the per-source cap counts until a connection is unbound (a data stream with a valid token)", () => {
  const a = new Admission({ maxConnections: 100, maxConnectionsPerAddress: 2 });
  const x = a.admit("10.0.0.1")!;
  a.admit("10.0.0.1");
  expect(a.admit("10.0.0.1")).toBeUndefined();
  expect(a.admit("10.0.0.9")).toBeDefined();
  a.unbind(x);
  expect(a.fromSource("10.0.0.1")).toBe(1);
  const y = a.admit("10.0.0.1")!;
  a.release(x);
  expect(a.fromSource("10.0.0.1")).toBe(2);
  a.release(y);
  expect(a.fromSource("10.0.0.1")).toBe(1);
  expect(a.open).toBe(2);
});

test("sources: IPv4 as is (also v4-mapped), IPv6 by its /64", () => {
  expect(sourceKey("192.0.2.7")).toBe("192.0.2.7");
  expect(sourceKey("::ffff:192.0.2.7")).toBe("192.0.2.7");
  expect(sourceKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
  expect(sourceKey("2001:db8:1:2:ffff:ffff:ffff:ffff")).toBe("2001:db8:1:2::/64");
  expect(sourceKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
  expect(sourceKey("2001:0db8:0001::")).toBe("2001:db8:1:0::/64");
  expect(sourceKey("::1")).toBe("0:0:0:0::/64");
  expect(sourceKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
  expect(sourceKey("64:ff9b::192.0.2.1")).toBe("64:ff9b:0:0::/64");
});
