// Direct-path hints are signed by the offering side's session key: a coordinator cannot add, change or move them.
import { describe, expect, test } from "bun:test";
import { exportPrivateKeyPem, generateKeyPair } from "../../src/pki/index.ts";
import { spkiFingerprint } from "../../src/pki/fingerprint.ts";
import { createPublicKey } from "node:crypto";
import { hintsProblem, localHints, signHints } from "../../src/wire/hints.ts";
import type { NetworkInterfaceInfo } from "node:os";

async function key(): Promise<{ pem: string; spki: string }> {
  const pem = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  return {
    pem,
    spki: spkiFingerprint(createPublicKey(pem).export({ type: "spki", format: "der" }).toString("base64")),
  };
}

describe("hint signatures", async () => {
  const guest = await key();
  const other = await key();
  const hints = [
    { host: "192.168.1.20", port: 40001 },
    { host: "127.0.0.1", port: 40001 },
  ];

  test("hints signed by the pinned key verify", () => {
    expect(hintsProblem(signHints(guest.pem, "s-1", "guest", hints), "guest", guest.spki)).toBeUndefined();
  });

  test("an added, changed or dropped hint fails", () => {
    const f = signHints(guest.pem, "s-1", "guest", hints);
    expect(hintsProblem({ ...f, hints: [...hints, { host: "10.0.0.9", port: 22 }] }, "guest", guest.spki)).toContain(
      "does not verify",
    );
    expect(hintsProblem({ ...f, hints: [{ ...hints[0]!, port: 40002 }, hints[1]!] }, "guest", guest.spki)).toContain(
      "does not verify",
    );
    expect(hintsProblem({ ...f, hints: [hints[1]!] }, "guest", guest.spki)).toContain("does not verify");
  });

  test("another key, even with a valid signature of its own, fails", () => {
    const f = signHints(other.pem, "s-1", "guest", hints);
    expect(hintsProblem(f, "guest", guest.spki)).toContain("not the guest's key");
  });

  test("hints replayed into another session, or passed off as the other side's, fail", () => {
    const f = signHints(guest.pem, "s-1", "guest", hints);
    expect(hintsProblem({ ...f, sessionId: "s-2" }, "guest", guest.spki)).toContain("does not verify");
    expect(hintsProblem(f, "host", guest.spki)).toContain("does not verify");
  });

  test("garbage key or signature is a refusal, not a crash", () => {
    const f = signHints(guest.pem, "s-1", "guest", hints);
    expect(hintsProblem({ ...f, key: "AAAA" }, "guest", guest.spki)).toContain("not a public key");
    expect(hintsProblem({ ...f, sig: "AAAA" }, "guest", guest.spki)).toContain("does not verify");
  });
});

test("a machine's own hints: loopback first (coordinator on loopback), then IPv4, then IPv6; never internal or link-local; 16 at most", () => {
  const nic = (address: string, family: "IPv4" | "IPv6", internal = false) =>
    ({
      address,
      family,
      internal,
      netmask: "",
      mac: "",
      cidr: null,
      ...(family === "IPv6" ? { scopeid: 0 } : {}),
    }) as NetworkInterfaceInfo;
  const ifaces = {
    lo: [nic("127.0.0.1", "IPv4", true), nic("::1", "IPv6", true)],
    eth0: [
      nic("2001:db8::7", "IPv6"),
      nic("192.168.1.20", "IPv4"),
      nic("fe80::fc:ff:fe00:1", "IPv6"),
      nic("fd00::2", "IPv6"),
    ],
    wlan0: [nic("169.254.3.4", "IPv4"), nic("10.0.0.5", "IPv4")],
  };
  expect(localHints(4000, true, ifaces).map((h) => h.host)).toEqual([
    "127.0.0.1",
    "192.168.1.20",
    "10.0.0.5",
    "2001:db8::7",
    "fd00::2",
  ]);
  expect(localHints(4000, false, ifaces).map((h) => h.host)).toEqual([
    "192.168.1.20",
    "10.0.0.5",
    "2001:db8::7",
    "fd00::2",
  ]);
  expect(localHints(4000, false, ifaces).every((h) => h.port === 4000)).toBe(true);
  const many = { eth0: Array.from({ length: 20 }, (_, i) => nic(`10.1.0.${i + 1}`, "IPv4")) };
  expect(localHints(4000, true, many)).toHaveLength(16);
});
