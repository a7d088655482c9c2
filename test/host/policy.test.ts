// Unit tests for src/host/policy.ts: the agent's --allow list and unspecified / link-local / metadata refusals.
import { describe, expect, test } from "bun:test";
import net from "node:net";
import { deniedAddress, TargetPolicy } from "../../src/host/policy.ts";
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

describe("names are compared in one spelling: lower case, without a trailing dot", () => {
  test("a metadata name with a trailing dot or in capitals is still refused", async () => {
    const listed = [
      "metadata.google.internal.:80",
      "METADATA.GOOGLE.INTERNAL.:80",
      "metadata.goog:80",
      "metadata.:80",
      "Instance-Data.EC2.Internal.:80",
    ];
    const p = new TargetPolicy(listed, () =>
      Promise.reject(new Error("a metadata name must be refused before any lookup")),
    );
    for (const t of listed) {
      const err = await refusal(p.resolve(t));
      expect([t, err.code, err.message]).toEqual([t, "not_allowed", expect.stringContaining("cloud metadata name")]);
    }
  });

  test("the allow list and the target match across a trailing dot", async () => {
    const p = new TargetPolicy(["localhost.:5432"]);
    expect(p.targets).toEqual(["localhost:5432"]);
    expect((await p.resolve("LOCALHOST.:5432")).port).toBe(5432);
    expect((await p.resolve("localhost:5432")).port).toBe(5432);
  });

  test("a host of dots only is not a name", () => {
    expect(() => new TargetPolicy(["...:80"])).toThrow("has no host name");
  });
});

describe("a name resolving to a denied address is refused; the address named exactly is allowed", () => {
  const fake = (answers: Record<string, string>) => (host: string) => Promise.resolve({ address: answers[host]! });

  test("unspecified (reaches this machine), link-local and cloud host endpoints, in any spelling", async () => {
    const answers: Record<string, string> = {
      zero: "0.0.0.0",
      zeronet: "0.1.2.3",
      any6: "::",
      anymapped: "::ffff:0.0.0.0",
      wire: "168.63.129.16",
      oracle: "192.0.0.192",
      alibaba: "100.100.100.200",
      imds: "169.254.169.254",
      imdsmapped: "::ffff:a9fe:a9fe",
      ll6: "FE80::1",
      aws6: "fd00:ec2::254",
    };
    const p = new TargetPolicy(
      Object.keys(answers).map((h) => `${h}:80`),
      fake(answers),
    );
    for (const [host, address] of Object.entries(answers)) {
      const err = await refusal(p.resolve(`${host}:80`));
      expect([host, err.code, err.message]).toEqual([
        host,
        "not_allowed",
        expect.stringContaining(`resolves to ${address}, `),
      ]);
    }
  });

  test("the system resolver's own numeric names: '0' is 0.0.0.0 and is refused", async () => {
    const p = new TargetPolicy(["0:5432", "0x0:5432"]);
    for (const t of ["0:5432", "0x0:5432"])
      expect((await refusal(p.resolve(t))).message).toContain("an unspecified address (it reaches this machine)");
  });

  test("a name resolving to an ordinary or loopback address is dialled at that address", async () => {
    const p = new TargetPolicy(["db:5432", "box:22"], fake({ db: "10.1.2.3", box: "::1" }));
    expect(await p.resolve("db:5432")).toEqual({ host: "10.1.2.3", port: 5432 });
    expect(await p.resolve("box:22")).toEqual({ host: "::1", port: 22 });
  });

  test("each denied address named exactly in --allow is the host's own choice", async () => {
    const exact = [
      "0.0.0.0:5432",
      "[::]:5432",
      "168.63.129.16:80",
      "169.254.169.254:80",
      "[fd00:ec2::254]:80",
      "100.100.100.200:80",
    ];
    const p = new TargetPolicy(exact);
    for (const t of exact) expect((await p.resolve(t)).port).toBe(Number(t.slice(t.lastIndexOf(":") + 1)));
  });
});

describe("deniedAddress", () => {
  test("says why for unspecified, link-local and metadata addresses", () => {
    const cases: [string, string][] = [
      ["0.0.0.0", "unspecified"],
      ["0.255.255.255", "unspecified"],
      ["::", "unspecified"],
      ["0:0:0:0:0:0:0:0", "unspecified"],
      ["::ffff:0.0.0.0", "unspecified"],
      ["169.254.1.1", "link-local"],
      ["169.254.169.254", "link-local"],
      ["fe80::1", "link-local"],
      ["FE80::1", "link-local"],
      ["febf::1", "link-local"],
      ["::ffff:169.254.169.254", "link-local"],
      ["168.63.129.16", "metadata"],
      ["100.100.100.200", "metadata"],
      ["192.0.0.192", "metadata"],
      ["fd00:ec2::254", "metadata"],
      ["::ffff:168.63.129.16", "metadata"],
    ];
    for (const [ip, kind] of cases) expect([ip, deniedAddress(ip)]).toEqual([ip, expect.stringContaining(kind)]);
  });

  test("undefined for ordinary and loopback addresses", () => {
    for (const ip of [
      "10.0.0.1",
      "::1",
      "127.0.0.1",
      "192.168.1.1",
      "8.8.8.8",
      "fd00::1",
      "fec0::1",
      "::ffff:10.0.0.1",
      "169.253.255.255",
      "1.0.0.0",
      "168.63.129.17",
      "not-an-ip",
    ]) {
      expect([ip, deniedAddress(ip)]).toEqual([ip, undefined]);
    }
  });
});
