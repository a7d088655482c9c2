// CPace against draft-irtf-cfrg-cpace's own test vectors for ristretto255 + SHA-512 (appendix "Test vectors").
import { describe, expect, test } from "bun:test";
import {
  calculateGenerator,
  deriveIsk,
  generatorString,
  lvCat,
  prependLen,
  publicShare,
  scalarFromLE,
  scalarMultVfy,
} from "../../src/pki/cpace.ts";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const PRS = Buffer.from("Password");
const CI = hex("0b415f696e69746961746f720b425f726573706f6e646572");
const SID = hex("7e4b4791d6a8ef019b936c79fb7f2c57");

describe("cpace string utilities", () => {
  test("prepend_len and lv_cat", () => {
    expect(prependLen(Buffer.alloc(0)).toString("hex")).toBe("00");
    expect(prependLen(Buffer.from("1234")).toString("hex")).toBe("0431323334");
    expect(
      prependLen(Buffer.from(Array.from({ length: 128 }, (_, i) => i)))
        .subarray(0, 3)
        .toString("hex"),
    ).toBe("800100");
    expect(lvCat(Buffer.from("1234"), Buffer.from("5"), Buffer.alloc(0), Buffer.from("678")).toString("hex")).toBe(
      "043132333401350003363738",
    );
  });
});

describe("cpace ristretto255 + SHA-512 vectors", () => {
  test("generator", () => {
    expect(generatorString(PRS, CI, SID).toString("hex")).toBe(
      hex(`
      11435061636552697374726574746f3235350850617373776f726464
      00000000000000000000000000000000000000000000000000000000
      00000000000000000000000000000000000000000000000000000000
      00000000000000000000000000000000000000000000000000000000
      00000000000000000000000000000000180b415f696e69746961746f
      720b425f726573706f6e646572107e4b4791d6a8ef019b936c79fb7f
      2c57`).toString("hex"),
    );
    expect(Buffer.from(calculateGenerator(PRS, CI, SID).toBytes()).toString("hex")).toBe(
      "222b6b195fe84b1652badb6f6a3ae3d24341e7306967f0b8115b40d5698c7e56",
    );
  });

  test("messages, K and ISK (initiator/responder)", () => {
    const g = calculateGenerator(PRS, CI, SID);
    const ya = scalarFromLE(hex("da3d23700a9e5699258aef94dc060dfda5ebb61f02a5ea77fad53f4ff0976d08"));
    const yb = scalarFromLE(hex("d2316b454718c35362d83d69df6320f38578ed5984651435e2949762d900b80d"));
    const Ya = publicShare(ya, g);
    const Yb = publicShare(yb, g);
    expect(Ya.toString("hex")).toBe("d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0eec482b9157");
    expect(Yb.toString("hex")).toBe("3ea7e0b19560d7c0b0f5734f63b955286dfa8232b5ebe63324e2d9e7433f7258");
    const Ka = scalarMultVfy(ya, Yb)!;
    const Kb = scalarMultVfy(yb, Ya)!;
    expect(Ka.toString("hex")).toBe("80b69a8a76457ab6a4d7f887a4bf6b55a2f80ac19c333f917a05fc9887c8b40f");
    expect(Kb.equals(Ka)).toBe(true);
    expect(deriveIsk(SID, Ka, Ya, Buffer.from("ADa"), Yb, Buffer.from("ADb")).toString("hex")).toBe(
      hex(`
      b69effbf61b51d56401c0f65601abe428de8206feaaf0e32198896dc
      ae7b35cd2b38950a39dfd5d4a79164614c2984f7daa460b588c1e80c
      3fa2068af7900447`).toString("hex"),
    );
  });

  test("scalar_mult_vfy: valid input, and the two inputs that must abort", () => {
    const s = scalarFromLE(hex("7cd0e075fa7955ba52c02759a6c90dbbfc10e6d40aea8d283e407d88cf538a05"));
    expect(
      scalarMultVfy(s, hex("2c3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c"))!.toString("hex"),
    ).toBe("7c13645fe790a468f62c39beb7388e541d8405d1ade69d1778c5fe3e7f6b600e");
    expect(scalarMultVfy(s, hex("2b3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c"))).toBeUndefined();
    expect(scalarMultVfy(s, Buffer.alloc(32))).toBeUndefined();
  });
});

describe("tessera's code PAKE", () => {
  const { guestStart, hostRespond, tagsEqual } =
    require("../../src/pki/code-pake.ts") as typeof import("../../src/pki/code-pake.ts");
  const guest = { spki: `SHA256:${"g".repeat(43)}`, name: "ana", reason: "debug" };
  const host = { spki: `SHA256:${"h".repeat(43)}`, target: "127.0.0.1:5432" };

  test("the same secret gives the same keys and tags on both sides", () => {
    const g = guestStart("K7QF", "M2XD");
    const h = hostRespond("K7QF", "M2XD", g.msg.sid, g.msg.msg, guest, host)!;
    const k = g.finish(guest, host, h.msg)!;
    expect(tagsEqual(h.keys.hostTag, k.hostTag)).toBe(true);
    expect(tagsEqual(k.guestTag, h.keys.guestTag)).toBe(true);
    expect(k.verify).toBe(h.keys.verify);
  });

  test("a wrong secret, another nameplate or any changed claim breaks confirmation", () => {
    for (const [np, secret, gc, hc] of [
      ["K7QF", "M2XE", guest, host],
      ["K7QG", "M2XD", guest, host],
      ["K7QF", "M2XD", { ...guest, reason: "other" }, host],
      ["K7QF", "M2XD", guest, { ...host, spki: `SHA256:${"x".repeat(43)}` }],
    ] as const) {
      const g = guestStart("K7QF", "M2XD");
      const h = hostRespond(np, secret, g.msg.sid, g.msg.msg, gc, hc)!;
      const k = g.finish(guest, host, h.msg)!;
      expect(tagsEqual(h.keys.hostTag, k.hostTag)).toBe(false);
      expect(tagsEqual(k.guestTag, h.keys.guestTag)).toBe(false);
    }
  });

  test("an identity or undecodable share aborts", () => {
    const g = guestStart("K7QF", "M2XD");
    expect(g.finish(guest, host, Buffer.alloc(32).toString("base64url"))).toBeUndefined();
    expect(
      hostRespond("K7QF", "M2XD", g.msg.sid, Buffer.alloc(32, 0xff).toString("base64url"), guest, host),
    ).toBeUndefined();
  });

  test("cost of one side (reported, not asserted)", () => {
    const n = 20;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const g = guestStart("K7QF", "M2XD");
      const h = hostRespond("K7QF", "M2XD", g.msg.sid, g.msg.msg, guest, host)!;
      g.finish(guest, host, h.msg);
    }
    console.log(`code PAKE: ${((performance.now() - t0) / n / 2).toFixed(2)} ms CPU per side per join`);
  });
});
