// Unit tests for src/host/policy.ts: the agent's --allow list and link-local / metadata refusals.
import { describe, expect, test } from "bun:test";
import net from "node:net";
import { isLinkLocalOrMetadata, TargetPolicy } from "../../src/host/policy.ts";
import { TesseraError } from "../../src/errors.ts";

async function refusal(p: Promise<unknown>): Promise<TesseraError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(TesseraError);
  return caught as TesseraError;
}

describe("TargetPolicy.resolve", () => {
  test("an allowed literal IP target resolves to itself", async () => {
    const p = new TargetPolicy(["127.0.0.1:5432", "[::1]:22"]);
    expect(await p.resolve("127.0.0.1:5432")).toEqual({ host: "127.0.0.1", port: 5432 });
    expect(await p.resolve("[::1]:22")).toEqual({ host: "::1", port: 22 });
  });

  test("a target not on the list is refused with not_allowed", async () => {
    const p = new TargetPolicy(["127.0.0.1:5432"]);
    for (const t of ["127.0.0.1:5433", "127.0.0.2:5432", "10.0.0.1:22", "localhost:5432"]) {
      const err = await refusal(p.resolve(t));
      expect(err.code).toBe("not_allowed");
      expect(err.message).toContain(t);
    }
  });

  test("matching is case- and whitespace-insensitive", async () => {
    const p = new TargetPolicy(["LocalHost:5432"]);
    const r = await p.resolve(" localhost:5432 ");
    expect(r.port).toBe(5432);
  });

  test("an allowed localhost target resolves to a loopback address", async () => {
    const p = new TargetPolicy(["localhost:5432"]);
    const { host, port } = await p.resolve("localhost:5432");
    expect(port).toBe(5432);
    expect(net.isIP(host)).not.toBe(0);
    expect(host === "::1" || /^127\./.test(host)).toBe(true);
  });

  test("a cloud metadata name is refused even when listed", async () => {
    const p = new TargetPolicy(["metadata.google.internal:80", "metadata:80", "instance-data:80"]);
    for (const t of ["metadata.google.internal:80", "metadata:80", "instance-data:80", "Metadata.Google.Internal:80"]) {
      const err = await refusal(p.resolve(t));
      expect(err.code).toBe("not_allowed");
      expect(err.message).toContain("metadata");
    }
  });

  test("an explicitly listed metadata address is allowed", async () => {
    const p = new TargetPolicy(["169.254.169.254:80"]);
    expect(await p.resolve("169.254.169.254:80")).toEqual({ host: "169.254.169.254", port: 80 });
  });

  test("the constructor rejects a malformed allow entry", () => {
    expect(() => new TargetPolicy(["no-port"])).toThrow();
    expect(() => new TargetPolicy(["host:0"])).toThrow();
  });

  test("targets lists the normalised allow list", () => {
    expect(new TargetPolicy(["DB:5432", "127.0.0.1:22"]).targets.sort()).toEqual(["127.0.0.1:22", "db:5432"]);
  });
});

describe("isLinkLocalOrMetadata", () => {
  test("true for link-local and metadata addresses", () => {
    for (const ip of ["169.254.1.1", "169.254.169.254", "fe80::1", "FE80::1", "febf::1", "fd00:ec2::254", "::ffff:169.254.169.254", "100.100.100.200"]) {
      expect([ip, isLinkLocalOrMetadata(ip)]).toEqual([ip, true]);
    }
  });

  test("false for ordinary addresses", () => {
    for (const ip of ["10.0.0.1", "::1", "127.0.0.1", "192.168.1.1", "8.8.8.8", "fd00::1", "fec0::1", "::ffff:10.0.0.1", "169.253.255.255"]) {
      expect([ip, isLinkLocalOrMetadata(ip)]).toEqual([ip, false]);
    }
  });
});
