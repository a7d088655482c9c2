// A signed release, end to end: scripts/build.ts --release --sign builds this machine's target with a
// key made here, a loopback HTTP server serves it, and install.sh (TESSERA_BASE_URL, TESSERA_RELEASE_KEY,
// TESSERA_BINDIR) installs from it. Tampering after signing, a missing signature, the wrong key and an
// ssh-keygen that cannot verify all install nothing; the request log shows what was downloaded.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { tarGz } from "../../scripts/release/archive.ts";
import { tmpDir } from "./harness.ts";

setDefaultTimeout(240_000);

const ROOT = path.resolve(import.meta.dir, "../..");
const TAG = "v7.7.7";
const work = tmpDir();
const releases = path.join(work, "releases");
const requestLog = path.join(work, "requests.log");
const platform = `${process.platform}-${process.arch}`;
const asset = `tessera-${platform}`;
let server: ReturnType<typeof Bun.spawn> | undefined;
let base = "";
let build = { code: 0, out: "", err: "" };
let keyFingerprint = "";

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
const key = (name: string) => path.join(work, name);

function keygen(name: string): void {
  const r = Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key(name)]);
  expect(r.exitCode).toBe(0);
}

/** A copy of the genuine release under another tag, changed by `edit`. */
function variant(tag: string, edit: (dir: string) => void): void {
  const dir = path.join(releases, tag);
  fs.cpSync(path.join(releases, TAG), dir, { recursive: true });
  edit(dir);
}

beforeAll(async () => {
  keygen("release-key");
  keygen("someone-else");
  keyFingerprint = Bun.spawnSync(["ssh-keygen", "-l", "-f", key("release-key.pub")])
    .stdout.toString()
    .split(" ")[1]!;
  const dir = path.join(releases, TAG);
  const r = Bun.spawnSync(
    ["bun", "scripts/build.ts", "--release", "--targets", platform, "--sign", key("release-key")],
    {
      cwd: ROOT,
      env: { ...process.env, TESSERA_VERSION: TAG, TESSERA_RELEASE_DIR: dir },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  build = { code: r.exitCode ?? 1, out: r.stdout.toString(), err: r.stderr.toString() };
  if (build.code !== 0) return;
  // SHA256SUMS and the archive both replaced after signing, consistently: every checksum matches,
  // only the signature can tell.
  variant("v7.7.8", (d) => {
    const evil = tarGz(
      [{ name: "tessera", data: new TextEncoder().encode("#!/bin/sh\necho v7.7.8\n"), mode: 0o755 }],
      0,
    );
    fs.writeFileSync(path.join(d, `${asset}.tar.gz`), evil);
    const sums = fs.readFileSync(path.join(d, "SHA256SUMS"), "utf8");
    fs.writeFileSync(
      path.join(d, "SHA256SUMS"),
      sums.replace(new RegExp(`^[0-9a-f]{64}(  ${asset}\\.tar\\.gz)$`, "m"), `${sha(evil)}$1`),
    );
  });
  variant("v7.7.9", (d) => fs.rmSync(path.join(d, "SHA256SUMS.sig")));
  // A server that answers with an endless checksum file.
  fs.mkdirSync(path.join(releases, "v7.7.5"));
  fs.writeFileSync(path.join(releases, "v7.7.5", "SHA256SUMS"), `${"0".repeat(64)}  x\n`.repeat(2000));

  fs.writeFileSync(requestLog, "");
  server = Bun.spawn([process.execPath, path.join(import.meta.dir, "release-server.ts"), releases, requestLog], {
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = (server.stdout as ReadableStream<Uint8Array>).getReader();
  let first = "";
  while (!first.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the release server exited before saying its port");
    first += new TextDecoder().decode(value);
  }
  base = `http://127.0.0.1:${first.trim()}/releases`;
});

afterAll(() => {
  server?.kill("SIGKILL");
  fs.rmSync(work, { recursive: true, force: true });
});

// Never spawnSync here: the release server runs in this process and must keep answering.
async function install(env: Record<string, string | undefined>) {
  const bindir = fs.mkdtempSync(path.join(work, "bin-"));
  fs.writeFileSync(requestLog, "");
  const proc = Bun.spawn(["bash", path.join(ROOT, "install.sh")], {
    env: {
      PATH: process.env.PATH,
      HOME: work,
      TESSERA_BASE_URL: base,
      TESSERA_BINDIR: bindir,
      TESSERA_SKIP_LINK: "1",
      TESSERA_VERSION: TAG,
      TESSERA_RELEASE_KEY: key("release-key.pub"),
      ...env,
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, err] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  return {
    code,
    err,
    installed: fs.readdirSync(bindir),
    bin: path.join(bindir, "tessera"),
    got: fs.readFileSync(requestLog, "utf8").split("\n").filter(Boolean),
  };
}

const download = (tag: string, file: string) => `/releases/download/${tag}/${file}`;

test("the release build signs SHA256SUMS, which lists the archive, the bare executable and the notices", () => {
  expect(build.err).toBe("");
  expect(build.code).toBe(0);
  // A test key, not the pinned one: the build says so.
  expect(build.out).toContain("NOT the key in deploy/release-key.pub");
  const dir = path.join(releases, TAG);
  expect(fs.readdirSync(dir).sort()).toEqual(
    ["SHA256SUMS", "SHA256SUMS.sig", "THIRD-PARTY-NOTICES", asset, `${asset}.tar.gz`].sort(),
  );
  const sums = fs.readFileSync(path.join(dir, "SHA256SUMS"), "utf8");
  for (const f of [asset, `${asset}.tar.gz`, "THIRD-PARTY-NOTICES"])
    expect(sums).toContain(`${sha(fs.readFileSync(path.join(dir, f)))}  ${f}\n`);
  // The signature verifies with plain ssh-keygen, as the README tells people to do by hand.
  const allowed = path.join(work, "allowed_signers");
  const pub = fs.readFileSync(key("release-key.pub"), "utf8").trim().split(" ").slice(0, 2).join(" ");
  fs.writeFileSync(allowed, `tessera-release namespaces="tessera-release" ${pub}\n`);
  const verify = (file: string) =>
    Bun.spawnSync(
      [
        "ssh-keygen",
        "-Y",
        "verify",
        "-f",
        allowed,
        "-I",
        "tessera-release",
        "-n",
        "tessera-release",
        "-s",
        path.join(dir, "SHA256SUMS.sig"),
      ],
      { stdin: Bun.file(file), stdout: "pipe", stderr: "pipe" },
    );
  expect(verify(path.join(dir, "SHA256SUMS")).exitCode).toBe(0);
  expect(verify(path.join(releases, "v7.7.8", "SHA256SUMS")).exitCode).not.toBe(0);
  // The archive holds the executable and the notices, owned by root, dated at the commit.
  const list = Bun.spawnSync(["tar", "-tvzf", path.join(dir, `${asset}.tar.gz`)], { env: { TZ: "UTC" } });
  const lines = list.stdout.toString().trim().split("\n");
  expect(lines.map((l) => l.split(/\s+/).slice(0, 2).join(" "))).toEqual([
    "-rwxr-xr-x root/root",
    "-rw-r--r-- root/root",
  ]);
  expect(lines.map((l) => l.split(/\s+/).at(-1))).toEqual(["tessera", "THIRD-PARTY-NOTICES"]);
  const notices = fs.readFileSync(path.join(dir, "THIRD-PARTY-NOTICES"), "utf8");
  for (const line of ["valibot@1.5.0  MIT", "tslib@1.14.1  0BSD", "tslib@2.9.1  0BSD", "citty@0.2.2  MIT"])
    expect(notices).toContain(`  ${line}\n`);
  // Only what the executable bundles: no devDependencies.
  expect(notices).not.toContain("typescript@");
  expect(notices).not.toContain("@biomejs/biome@");
});

test("install.sh installs the signed release from its compressed asset, and tessera version runs", async () => {
  const r = await install({});
  expect(keyFingerprint).toStartWith("SHA256:");
  expect(r.err).toContain(`signature verified: Good "tessera-release" signature`);
  expect(r.err).toContain(keyFingerprint);
  expect(r.code).toBe(0);
  // The signature is checked before the archive is fetched; the bare executable is never downloaded.
  expect(r.got).toEqual([
    download(TAG, "SHA256SUMS"),
    download(TAG, "SHA256SUMS.sig"),
    download(TAG, `${asset}.tar.gz`),
  ]);
  expect(r.installed).toEqual(["tessera"]);
  expect(Bun.spawnSync([r.bin, "version"]).stdout.toString().trim()).toBe(TAG);
  const details = JSON.parse(Bun.spawnSync([r.bin, "version", "--json"]).stdout.toString());
  const head = Bun.spawnSync(["git", "rev-parse", "HEAD"], { cwd: ROOT }).stdout.toString().trim();
  const committed = Number(Bun.spawnSync(["git", "log", "-1", "--format=%ct"], { cwd: ROOT }).stdout.toString());
  expect(details.version).toBe(TAG);
  expect(details.commit).toStartWith(head);
  expect(details.bun).toBe(Bun.version);
  expect(details.buildDate).toBe(new Date(committed * 1000).toISOString().replace(".000Z", "Z"));
  expect(details.platform).toBe(platform);
});

test("SHA256SUMS and the archive changed consistently after signing: nothing is installed, the signature is named", async () => {
  const r = await install({ TESSERA_VERSION: "v7.7.8" });
  expect(r.code).toBe(1);
  expect(r.err).toContain("bad signature: SHA256SUMS.sig does not verify SHA256SUMS");
  expect(r.err).not.toContain("sha256 verified");
  expect(r.installed).toEqual([]);
  // Refused before the tampered archive was even downloaded.
  expect(r.got).toEqual([download("v7.7.8", "SHA256SUMS"), download("v7.7.8", "SHA256SUMS.sig")]);
});

test("with the signature removed, install.sh refuses", async () => {
  const r = await install({ TESSERA_VERSION: "v7.7.9" });
  expect(r.code).toBe(1);
  expect(r.err).toContain("has no signature (SHA256SUMS.sig): nothing was installed");
  expect(r.installed).toEqual([]);
  expect(r.got).not.toContain(download("v7.7.9", `${asset}.tar.gz`));
});

test("an oversized SHA256SUMS is cut off, and nothing is installed", async () => {
  const r = await install({ TESSERA_VERSION: "v7.7.5" });
  expect(r.code).toBe(1);
  expect(r.err).toContain("(or it is larger than 65536 bytes)");
  expect(r.installed).toEqual([]);
  expect(r.got).toEqual([download("v7.7.5", "SHA256SUMS")]);
});

test("the wrong key, and by default the pinned release key, refuse a release signed by another key", async () => {
  const other = await install({ TESSERA_RELEASE_KEY: key("someone-else.pub") });
  expect(other.code).toBe(1);
  expect(other.err).toContain("bad signature");
  expect(other.installed).toEqual([]);
  const pinned = await install({ TESSERA_RELEASE_KEY: undefined });
  expect(pinned.code).toBe(1);
  expect(pinned.err).toContain("bad signature");
  expect(pinned.installed).toEqual([]);
  const junk = path.join(work, "junk.pub");
  fs.writeFileSync(junk, "not a key\n");
  const bad = await install({ TESSERA_RELEASE_KEY: junk });
  expect(bad.code).toBe(1);
  expect(bad.err).toContain("is not an OpenSSH public key");
  expect(bad.got).toEqual([download(TAG, "SHA256SUMS")]);
});

test("an ssh-keygen too old for -Y, or none at all: refused with how to verify by hand, unless explicitly skipped", async () => {
  // OpenSSH before 8.1 answers -Y like this.
  const old = path.join(work, "old-openssh");
  fs.mkdirSync(old);
  fs.writeFileSync(
    path.join(old, "ssh-keygen"),
    "#!/bin/sh\necho 'ssh-keygen: illegal option -- Y' >&2\necho 'usage: ssh-keygen [-q] [-b bits]' >&2\nexit 1\n",
    { mode: 0o755 },
  );
  const r = await install({ PATH: `${old}:${process.env.PATH}` });
  expect(r.code).toBe(1);
  expect(r.err).toContain("this ssh-keygen cannot verify signatures (it needs OpenSSH 8.1 or newer)");
  expect(r.err).toContain("To verify by hand");
  expect(r.err).toContain("ssh-keygen -Y verify -f allowed_signers -I tessera-release -n tessera-release");
  expect(r.err).toContain("TESSERA_INSECURE_SKIP_SIGNATURE=1");
  expect(r.installed).toEqual([]);
  expect(r.got).not.toContain(download(TAG, `${asset}.tar.gz`));

  // A PATH with everything but ssh-keygen.
  const none = path.join(work, "no-openssh");
  fs.mkdirSync(none);
  for (const dir of (process.env.PATH ?? "").split(":").filter((d) => d && fs.existsSync(d)))
    for (const f of fs.readdirSync(dir))
      if (f !== "ssh-keygen" && !fs.existsSync(path.join(none, f)))
        fs.symlinkSync(path.join(dir, f), path.join(none, f));
  const missing = await install({ PATH: none });
  expect(missing.code).toBe(1);
  expect(missing.err).toContain("ssh-keygen is not installed");
  expect(missing.installed).toEqual([]);

  // The user's explicit choice: installed on the checksums alone, with a warning.
  const skipped = await install({ TESSERA_INSECURE_SKIP_SIGNATURE: "1", PATH: `${old}:${process.env.PATH}` });
  expect(skipped.err).toContain("WARNING: TESSERA_INSECURE_SKIP_SIGNATURE=1");
  expect(skipped.code).toBe(0);
  expect(skipped.got).not.toContain(download(TAG, "SHA256SUMS.sig"));
  expect(Bun.spawnSync([skipped.bin, "version"]).stdout.toString().trim()).toBe(TAG);
});
