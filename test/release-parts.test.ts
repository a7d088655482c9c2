// The release build's parts on their own: the archive writer (system tar reads it back; same input,
// same bytes), THIRD-PARTY-NOTICES from bun.lock (nesting, runtime-only, refusals), signing with
// ssh-keygen, and the build date taken from the commit, never the clock.
import { afterAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { tar, tarGz } from "../scripts/release/archive.ts";
import { buildInfo, isoDate } from "../scripts/release/build-info.ts";
import { allowedSigners, fingerprint, signFile, verifyFile } from "../scripts/release/sign.ts";
import { bundledPackages, collectNotices, lockKey, renderNotices, runtimeClosure } from "../scripts/release/notices.ts";
import { tmpDir } from "./e2e/harness.ts";

const ROOT = path.resolve(import.meta.dir, "..");
const work = tmpDir();
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const bytes = (s: string) => new TextEncoder().encode(s);

test("archive: system tar lists and extracts it with our modes, owner and mtime; same input, same bytes", () => {
  const entries = [
    { name: "tessera", data: bytes("#!/bin/sh\necho hi\n"), mode: 0o755 },
    { name: "THIRD-PARTY-NOTICES", data: new Uint8Array(513).fill(65), mode: 0o644 },
  ];
  const a = tarGz(entries, 1_700_000_000);
  expect(Buffer.from(tarGz(entries, 1_700_000_000)).equals(Buffer.from(a))).toBe(true);
  expect(Buffer.from(tarGz(entries, 1_700_000_001)).equals(Buffer.from(a))).toBe(false);
  // gzip header: no file name, no timestamp (bytes 4-7 are zero).
  expect([...a.subarray(0, 8)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
  const file = path.join(work, "a.tar.gz");
  fs.writeFileSync(file, a);
  const list = Bun.spawnSync(["tar", "--full-time", "-tvzf", file], { env: { TZ: "UTC" } }).stdout.toString();
  expect(list.trim().split("\n")).toEqual([
    "-rwxr-xr-x root/root        18 2023-11-14 22:13:20 tessera",
    "-rw-r--r-- root/root       513 2023-11-14 22:13:20 THIRD-PARTY-NOTICES",
  ]);
  const out = path.join(work, "out");
  fs.mkdirSync(out);
  expect(Bun.spawnSync(["tar", "-xzf", file, "-C", out, "tessera"]).exitCode).toBe(0);
  expect(fs.readdirSync(out)).toEqual(["tessera"]);
  expect(Bun.spawnSync([path.join(out, "tessera")]).stdout.toString()).toBe("hi\n");
  // 512-byte blocks, two zero blocks at the end.
  expect(tar(entries, 0).length).toBe(512 + 512 + 512 + 1024 + 1024);
});

test("archive: only plain file names go in", () => {
  for (const name of ["../evil", "/etc/passwd", "a/b", ".hidden", "", "x".repeat(101)])
    expect(() => tar([{ name, data: bytes("x"), mode: 0o644 }], 0)).toThrow("must be a plain file name");
  expect(() => tar([{ name: "ok", data: bytes("x"), mode: 0o644 }], -1)).toThrow("bad archive mtime");
});

test("notices: package directories and bun.lock keys, nested copies included", () => {
  expect([
    ...bundledPackages([
      "src/main.ts",
      "node_modules/valibot/dist/index.js",
      "node_modules/@noble/curves/ed25519.js",
      "node_modules/tsyringe/node_modules/tslib/tslib.es6.js",
      "../elsewhere/node_modules/citty/dist/index.mjs",
    ]),
  ]).toEqual([
    "node_modules/valibot",
    "node_modules/@noble/curves",
    "node_modules/tsyringe/node_modules/tslib",
    "node_modules/citty",
  ]);
  expect(lockKey("node_modules/tsyringe/node_modules/tslib")).toBe("tsyringe/tslib");
  expect(lockKey("node_modules/@a/b/node_modules/@c/d")).toBe("@a/b/@c/d");
});

test("notices: the runtime closure follows dependencies and nesting, never devDependencies", () => {
  const lock = {
    workspaces: { "": { dependencies: { a: "^1" }, devDependencies: { dev: "^1" } } },
    packages: {
      a: ["a@1.0.0", "", { dependencies: { b: "^1", c: "^1" } }],
      b: ["b@1.0.0", "", { dependencies: { c: "^2" } }],
      "b/c": ["c@2.0.0", "", {}],
      c: ["c@1.0.0", "", {}],
      dev: ["dev@1.0.0", "", { dependencies: { d: "^1" } }],
      d: ["d@1.0.0", "", {}],
    },
  } as unknown as Parameters<typeof runtimeClosure>[0];
  expect([...runtimeClosure(lock)].sort()).toEqual(["a", "b", "b/c", "c"]);
});

test("notices from this repository's lockfile: versions, licenses and texts; refusals when out of step", () => {
  const notices = collectNotices(
    ROOT,
    new Set(["node_modules/valibot", "node_modules/tslib", "node_modules/tsyringe/node_modules/tslib"]),
  );
  expect(notices.map((n) => `${n.name}@${n.version} ${n.license}`)).toEqual([
    "tslib@1.14.1 0BSD",
    "tslib@2.9.1 0BSD",
    "valibot@1.5.0 MIT",
  ]);
  const text = renderNotices(notices, "v1.2.3");
  expect(text).toStartWith("THIRD-PARTY-NOTICES for tessera v1.2.3\n");
  expect(text).toContain("valibot@1.5.0  MIT  https://www.npmjs.com/package/valibot/v/1.5.0\n\nLICENSE.md:\n\n");
  expect(renderNotices(notices, "v1.2.3")).toBe(text);
  // A devDependency bundled by mistake, and a node_modules that is not what bun.lock says.
  expect(() => collectNotices(ROOT, new Set(["node_modules/typescript"]))).toThrow(
    'node_modules/typescript is bundled but bun.lock has no runtime dependency "typescript"',
  );
  const fake = path.join(work, "fake");
  fs.mkdirSync(path.join(fake, "node_modules/valibot"), { recursive: true });
  fs.copyFileSync(path.join(ROOT, "bun.lock"), path.join(fake, "bun.lock"));
  fs.writeFileSync(path.join(fake, "node_modules/valibot/package.json"), '{"name":"valibot","version":"0.0.1"}');
  expect(() => collectNotices(fake, new Set(["node_modules/valibot"]))).toThrow(
    "is valibot@0.0.1 but bun.lock says 1.5.0: run bun install --frozen-lockfile",
  );
  fs.writeFileSync(path.join(fake, "node_modules/valibot/package.json"), '{"name":"valibot","version":"1.5.0"}');
  expect(() => collectNotices(fake, new Set(["node_modules/valibot"]))).toThrow("valibot@1.5.0 names no license");
});

test("build info: the commit and its time, SOURCE_DATE_EPOCH over both, and nothing from an enclosing repository", () => {
  const head = Bun.spawnSync(["git", "rev-parse", "HEAD"], { cwd: ROOT }).stdout.toString().trim();
  const ct = Number(Bun.spawnSync(["git", "log", "-1", "--format=%ct"], { cwd: ROOT }).stdout.toString());
  const info = buildInfo(ROOT, {});
  expect(info.commit).toStartWith(head);
  expect(info.epoch).toBe(ct);
  expect(buildInfo(ROOT, { SOURCE_DATE_EPOCH: "86400" }).epoch).toBe(86400);
  expect(() => buildInfo(ROOT, { SOURCE_DATE_EPOCH: "1e9" })).toThrow("SOURCE_DATE_EPOCH must be whole seconds");
  expect(isoDate(86400)).toBe("1970-01-02T00:00:00Z");
  expect(isoDate(null)).toBe("unknown");
  // A source tarball unpacked inside this checkout is not this checkout's commit.
  const nested = fs.mkdtempSync(path.join(ROOT, "dist", "unpacked-"));
  try {
    expect(buildInfo(nested, {})).toEqual({ commit: "unknown", epoch: null });
    expect(buildInfo(nested, { TESSERA_COMMIT: "a".repeat(40) }).commit).toBe("a".repeat(40));
    expect(() => buildInfo(nested, { TESSERA_COMMIT: "main" })).toThrow("TESSERA_COMMIT must be a full commit hash");
  } finally {
    fs.rmSync(nested, { recursive: true, force: true });
  }
});

test("signing: ssh-keygen signs and the signature verifies; a changed file, another key or an unprotected key fail", () => {
  const key = path.join(work, "sign-key");
  expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "c", "-f", key]).exitCode).toBe(0);
  const file = path.join(work, "SUMS");
  fs.writeFileSync(file, `${"a".repeat(64)}  tessera-linux-x64.tar.gz\n`);
  const signed = signFile(file, key);
  const pub = fs.readFileSync(`${key}.pub`, "utf8");
  expect(signed.publicKey).toBe(pub.trim());
  expect(signed.fingerprint).toBe(fingerprint(pub));
  expect(signed.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  // Ed25519 signatures carry no time: signing again gives the same bytes.
  const first = fs.readFileSync(`${file}.sig`, "utf8");
  expect(first).toStartWith("-----BEGIN SSH SIGNATURE-----\n");
  signFile(file, key);
  expect(fs.readFileSync(`${file}.sig`, "utf8")).toBe(first);
  fs.appendFileSync(file, "x");
  expect(() => verifyFile(file, `${file}.sig`, pub)).toThrow("SUMS.sig is not a valid signature of SUMS");
  expect(() => allowedSigners("hello world")).toThrow("not an OpenSSH public key");
  // The key's comment is no part of the allowed-signers line.
  expect(allowedSigners(pub)).toBe(
    `tessera-release namespaces="tessera-release" ${pub.trim().split(" ").slice(0, 2).join(" ")}\n`,
  );
  fs.chmodSync(key, 0o644);
  expect(() => signFile(file, key)).toThrow("ssh-keygen could not sign SUMS");
  expect(fs.existsSync(`${file}.sig`)).toBe(false);
});
