// Hostile peer-chosen strings: the wire's name rule refuses control, bidi, zero-width and tag characters;
// the operator's admin tables and --json output show none of them raw; embedded IPv4 addresses in IPv6
// spellings are judged by the deny list in targets and in direct-path hints.
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { ClientFrame } from "../src/wire/protocol.ts";
import { hostsTable, sessionsTable } from "../src/cli/admin-view.ts";
import { safeJson } from "../src/wire/untrusted-text.ts";
import { embeddedIPv4 } from "../src/host/embedded-ipv4.ts";
import { deniedAddress, TargetPolicy } from "../src/host/policy.ts";
import { hintRefusal } from "../src/host/hint-check.ts";

const CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIHh\n-----END CERTIFICATE REQUEST-----\n";
const request = (name: string) => ({
  t: "request",
  shareId: "db",
  target: "127.0.0.1:5432",
  csr: CSR,
  name,
  reason: "r",
});
/** Raw characters a terminal or a reader would act on or not see. */
const RAW_UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

describe("the wire's name rule", () => {
  test.each([
    ["C0", "a\u0007b"],
    ["escape", "a\u001b[31mb"],
    ["DEL", "a\u007fb"],
    ["C1 (CSI)", "a\u009bb"],
    ["C1 (NEL)", "a\u0085b"],
    ["bidi override", "evil\u202etxt.exe"],
    ["bidi isolate", "a\u2066b\u2069"],
    ["right-to-left mark", "a\u200fb"],
    ["zero-width space", "ad\u200bmin"],
    ["zero-width joiner", "a\u200db"],
    ["BOM", "\ufeffalice"],
    ["word joiner", "a\u2060b"],
    ["tag characters", "alice\u{e0041}\u{e0042}"],
    ["line separator", "a\u2028b"],
  ])("refuses %s", (_what, name) => {
    expect(v.safeParse(ClientFrame, request(name)).success).toBe(false);
  });

  test.each([["alice"], ["alice laptop"], ["Zoë"], ["山田"], ["ci-bot@build.example"]])("accepts %s", (name) => {
    expect(v.safeParse(ClientFrame, request(name)).success).toBe(true);
  });
});

describe("admin output escapes peer-chosen strings", () => {
  const hostile = "bob\u202egnp.exe\u009b2J\u200b\u{e0041}";
  test("sessions and hosts tables print no raw control, bidi, zero-width or tag character", () => {
    const sessions = sessionsTable([
      {
        id: "s-1",
        host: hostile,
        guest: hostile,
        guestAddr: `1.2.3.4:5${hostile}`,
        target: `db:5432${hostile}`,
        state: `live${hostile}`,
        openedAt: new Date().toISOString(),
        idleSec: 1,
        streams: { live: 0, total: 0 },
        bytesUp: 0,
        bytesDown: 0,
      },
    ]);
    const hosts = hostsTable([
      {
        name: hostile,
        key: "SHA256:abc",
        enrolledAt: new Date().toISOString(),
        lastSeen: null,
        connections: 0,
        shares: [],
        removedAt: new Date().toISOString(),
        removedBy: hostile,
      },
    ]);
    for (const out of [sessions, hosts]) {
      expect(out.replace(/\n/g, "")).not.toMatch(RAW_UNSAFE);
      expect(out).toContain("bob\\u202e");
    }
  });

  test("--json: the same value to a parser, nothing raw on the screen", () => {
    const value = { sessions: [{ guest: hostile, note: 'quote " and \\ backslash' }] };
    const out = safeJson(value);
    expect(out.replace(/\n/g, "")).not.toMatch(RAW_UNSAFE);
    expect(JSON.parse(out)).toEqual(value);
  });
});

describe("embedded IPv4 before the deny list", () => {
  test.each([
    ["64:ff9b::a9fe:a9fe", "169.254.169.254"],
    ["64:ff9b::169.254.169.254", "169.254.169.254"],
    ["64:ff9b:1:a9fe:a9:fe00::", "169.254.169.254"],
    ["64:ff9b:1::a9fe:a9fe", "169.254.169.254"],
    ["2002:a9fe:a9fe::1", "169.254.169.254"],
    ["::a9fe:a9fe", "169.254.169.254"],
    ["2002:6464:64c8::", "100.100.100.200"],
  ])("%s carries %s and is denied", (ip, inner) => {
    expect(embeddedIPv4(ip)).toContain(inner);
    expect(deniedAddress(ip)).toContain(inner);
    expect(hintRefusal({ host: ip, port: 443 }, true)).toContain(inner);
  });

  test("IPv6's own loopback and ordinary addresses carry nothing", () => {
    expect(deniedAddress("::ffff:a9fe:a9fe")).toBe("link-local");
    expect(embeddedIPv4("::1")).toEqual([]);
    expect(embeddedIPv4("::")).toEqual([]);
    expect(embeddedIPv4("2001:db8::1")).toEqual([]);
    expect(deniedAddress("64:ff9b::c000:201")).toBeUndefined();
    expect(deniedAddress("2002:c000:201::1")).toBeUndefined();
  });

  test("a hint for loopback or multicast through NAT64 or 6to4 is judged as that address", () => {
    expect(hintRefusal({ host: "64:ff9b::7f00:1", port: 22 }, false)).toContain("loopback");
    expect(hintRefusal({ host: "2002:e000:1::", port: 22 }, true)).toContain("multicast");
  });

  test("a target name resolving to a NAT64 spelling of the metadata address is refused", async () => {
    const policy = new TargetPolicy(["db.internal:80"], async () => ({ address: "64:ff9b::a9fe:a9fe" }));
    await expect(policy.resolve("db.internal:80")).rejects.toThrow(/169\.254\.169\.254 inside 64:ff9b::a9fe:a9fe/);
  });
});
