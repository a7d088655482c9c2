// install.sh against a fake release server on loopback: releases signed with a key made here
// (TESSERA_RELEASE_KEY), the archive for the (faked) platform is the one downloaded, a checksum
// mismatch installs nothing, a platform without a binary is built from source, and what gets
// installed runs. test/e2e/signed-release.test.ts covers the signature's refusals.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import type { Server } from "bun";
import { tarGz } from "../scripts/release/archive.ts";
import { signFile } from "../scripts/release/sign.ts";
import { deploy, killAll, run, tmpDir } from "./e2e/harness.ts";

setDefaultTimeout(180_000);

const ROOT = path.resolve(import.meta.dir, "..");
const work = tmpDir();
const files = new Map<string, Uint8Array | string>();
const requested: string[] = [];
let server: Server<undefined>;
let base = "";
let shim = "";

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
const fakeBinary = (says: string) => `#!/bin/sh\necho ${says}\n`;

const releaseKey = path.join(work, "release-key");

/** A signed release: each asset as NAME.tar.gz holding `tessera` (bare: true, as releases before archives did). */
function release(
  tag: string,
  assets: Record<string, Uint8Array | string>,
  o: { sums?: Record<string, string>; bare?: boolean } = {},
): void {
  const lines: string[] = [];
  for (const [name, body] of Object.entries(assets)) {
    const file = o.bare ? name : `${name}.tar.gz`;
    const data = o.bare
      ? body
      : tarGz(
          [{ name: "tessera", data: typeof body === "string" ? new TextEncoder().encode(body) : body, mode: 0o755 }],
          0,
        );
    files.set(`/releases/download/${tag}/${file}`, data);
    lines.push(`${o.sums?.[name] ?? sha(data)}  ${file}`);
  }
  const sums = path.join(work, `SHA256SUMS-${tag}`);
  fs.writeFileSync(sums, `${lines.join("\n")}\n`);
  signFile(sums, releaseKey);
  files.set(`/releases/download/${tag}/SHA256SUMS`, fs.readFileSync(sums, "utf8"));
  files.set(`/releases/download/${tag}/SHA256SUMS.sig`, fs.readFileSync(`${sums}.sig`, "utf8"));
}

beforeAll(async () => {
  expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", releaseKey]).exitCode).toBe(0);
  // A real binary with a release tag compiled in, by the same build script CI and releases use.
  const bin = path.join(work, "tessera-build");
  const build = Bun.spawnSync(["bun", "scripts/build.ts"], {
    cwd: ROOT,
    env: { ...process.env, TESSERA_VERSION: "v9.8.7", TESSERA_OUTFILE: bin },
    stderr: "pipe",
  });
  expect(build.exitCode).toBe(0);
  const real = fs.readFileSync(bin);
  release("v9.8.7", {
    "tessera-linux-x64": real,
    "tessera-linux-arm64": fakeBinary("v9.8.7-linux-arm64"),
    "tessera-darwin-arm64": fakeBinary("v9.8.7-darwin-arm64"),
    "tessera-darwin-x64": fakeBinary("v9.8.7-darwin-x64"),
  });
  release("v6.6.6", { "tessera-linux-x64": real }, { sums: { "tessera-linux-x64": sha("something else") } });
  // Before releases had archives: the bare executable, still under a signed SHA256SUMS.
  release("v3.0.0", { "tessera-linux-x64": fakeBinary("v3.0.0-bare") }, { bare: true });
  release("v5.0.0", { "tessera-darwin-arm64": fakeBinary("v5.0.0-darwin-arm64") });
  // Right platform, right checksum, but it cannot start here (as a glibc binary on musl would).
  release("v4.0.0", { "tessera-linux-x64": "#!/bin/sh\necho 'error while loading shared libraries' >&2\nexit 127\n" });
  // The source tarball the fallback builds: this checkout's files under one top directory, like GitHub's archives.
  const list = Bun.spawnSync(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: ROOT })
    .stdout.toString()
    .split("\0")
    .filter((f) => f && fs.existsSync(path.join(ROOT, f)));
  fs.writeFileSync(path.join(work, "list"), list.join("\0"));
  const tar = Bun.spawnSync(
    [
      "tar",
      "-czf",
      path.join(work, "src.tar.gz"),
      "--null",
      "-T",
      path.join(work, "list"),
      "--transform",
      "s,^,tessera-5.0.0/,",
    ],
    { cwd: ROOT, stderr: "pipe" },
  );
  expect(tar.stderr.toString()).toBe("");
  files.set("/src.tar.gz", fs.readFileSync(path.join(work, "src.tar.gz")));

  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const p = new URL(req.url).pathname;
      requested.push(p);
      if (p === "/releases/latest") return Response.redirect(`${base}/tag/v9.8.7`, 302);
      if (p.startsWith("/releases/tag/")) return new Response("release page");
      const body = files.get(p);
      return body === undefined ? new Response("not found", { status: 404 }) : new Response(body as BodyInit);
    },
  });
  base = `http://127.0.0.1:${server.port}/releases`;

  // `uname` answers what the test says; everything else on PATH is the real thing.
  shim = path.join(work, "shim");
  fs.mkdirSync(shim);
  const realUname = Bun.which("uname")!;
  fs.writeFileSync(
    path.join(shim, "uname"),
    `#!/bin/sh\ncase "$1" in -s) echo "$FAKE_UNAME_S";; -m) echo "$FAKE_UNAME_M";; *) exec ${realUname} "$@";; esac\n`,
    { mode: 0o755 },
  );
});

afterAll(async () => {
  await killAll();
  server?.stop(true);
  fs.rmSync(work, { recursive: true, force: true });
});

async function install(env: Record<string, string>, opts: { pipe?: boolean; setsid?: boolean } = {}) {
  const bindir = fs.mkdtempSync(path.join(work, "bin-"));
  requested.length = 0;
  const script = path.join(ROOT, "install.sh");
  const cmd = opts.pipe ? ["bash"] : ["bash", script];
  const proc = Bun.spawn(opts.setsid ? ["setsid", "-w", ...cmd] : cmd, {
    env: {
      PATH: `${shim}:${process.env.PATH}`,
      HOME: work,
      FAKE_UNAME_S: "Linux",
      FAKE_UNAME_M: "x86_64",
      TESSERA_BASE_URL: base,
      TESSERA_BINDIR: bindir,
      TESSERA_SKIP_LINK: "1",
      TESSERA_RELEASE_KEY: `${releaseKey}.pub`,
      ...env,
    },
    // `curl ... | bash`: the script arrives on standard input.
    stdin: opts.pipe ? Bun.file(script) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, out, err] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  const bin = path.join(bindir, "tessera");
  const runs = fs.existsSync(bin) ? Bun.spawnSync([bin, "version"]).stdout.toString().trim() : null;
  return { code, out, err, bindir, runs, got: [...requested] };
}

test("curl | bash on linux x64: latest resolves to its tag, the right asset is fetched, verified and runs", async () => {
  const r = await install({}, { pipe: true });
  expect(r.err).toContain("sha256 verified");
  expect(r.code).toBe(0);
  expect(r.got).toEqual([
    "/releases/latest",
    "/releases/tag/v9.8.7",
    "/releases/download/v9.8.7/SHA256SUMS",
    "/releases/download/v9.8.7/SHA256SUMS.sig",
    "/releases/download/v9.8.7/tessera-linux-x64.tar.gz",
  ]);
  // The real compiled binary, reporting the tag it was built from.
  expect(r.runs).toBe("v9.8.7");
  expect((fs.statSync(path.join(r.bindir, "tessera")).mode & 0o777).toString(8)).toBe("755");
  expect(fs.readdirSync(r.bindir)).toEqual(["tessera"]);
});

test("each OS and CPU name maps to its own asset", async () => {
  for (const [s, m, asset] of [
    ["Linux", "aarch64", "linux-arm64"],
    ["Darwin", "arm64", "darwin-arm64"],
    ["Linux", "arm64", "linux-arm64"],
    ["Darwin", "x86_64", "darwin-x64"],
  ] as const) {
    const r = await install({ FAKE_UNAME_S: s, FAKE_UNAME_M: m, TESSERA_VERSION: "v9.8.7" });
    expect(r.code).toBe(0);
    expect(r.got).toContain(`/releases/download/v9.8.7/tessera-${asset}.tar.gz`);
    expect(r.runs).toBe(`v9.8.7-${asset}`);
  }
  for (const [s, m, msg] of [
    ["FreeBSD", "x86_64", "unsupported OS FreeBSD"],
    ["Linux", "riscv64", "unsupported CPU riscv64"],
    ["MINGW64_NT-10.0", "x86_64", "tessera-windows-x64.exe"],
  ] as const) {
    const r = await install({ FAKE_UNAME_S: s, FAKE_UNAME_M: m });
    expect(r.code).toBe(1);
    expect(r.err).toContain(msg);
    expect(r.runs).toBeNull();
  }
});

test("a checksum mismatch is refused and nothing is installed", async () => {
  const r = await install({ TESSERA_VERSION: "v6.6.6" });
  expect(r.code).toBe(1);
  expect(r.err).toContain("checksum mismatch for tessera-linux-x64.tar.gz");
  expect(r.got).toContain("/releases/download/v6.6.6/tessera-linux-x64.tar.gz");
  expect(fs.readdirSync(r.bindir)).toEqual([]);
});

test("a release from before archives: the bare executable listed in its signed SHA256SUMS is installed", async () => {
  const r = await install({ TESSERA_VERSION: "v3.0.0" });
  expect(r.code).toBe(0);
  expect(r.got).toContain("/releases/download/v3.0.0/tessera-linux-x64");
  expect(r.runs).toBe("v3.0.0-bare");
});

test("a verified binary that does not run here is not installed: the source build is tried instead", async () => {
  const r = await install({
    TESSERA_VERSION: "v4.0.0",
    TESSERA_SOURCE_URL: `http://127.0.0.1:${server.port}/no-such-source.tar.gz`,
  });
  expect(r.err).toContain("sha256 verified");
  expect(r.err).toContain("the release binary for linux-x64 does not run on this system; building from source");
  expect(r.err).toContain("no source at");
  expect(r.code).toBe(1);
  expect(fs.readdirSync(r.bindir)).toEqual([]);
});

test("bad input is refused before anything is downloaded", async () => {
  const badTag = await install({ TESSERA_VERSION: "v1; rm -rf /" });
  expect(badTag.code).toBe(1);
  expect(badTag.err).toContain("TESSERA_VERSION must be a tag like v1.2.3");
  const plain = await install({ TESSERA_BASE_URL: "http://example.invalid/releases" });
  expect(plain.code).toBe(1);
  expect(plain.err).toContain("must be an https:// URL");
  expect([...badTag.got, ...plain.got]).toEqual([]);
});

test("without a terminal, the link offer becomes a hint instead of a prompt", async () => {
  const r = await install({ TESSERA_SKIP_LINK: "", TESSERA_HOME: path.join(work, "never-linked") }, { setsid: true });
  expect(r.code).toBe(0);
  expect(r.err).toContain("next: tessera link HOST:PORT");
});

test("at a terminal, the installer offers to link, and a host enrols with the token typed in", async () => {
  const d = await deploy();
  // deploy() enrolled its own host with the first token: mint this machine its own.
  expect((await run(["ca", "--dir", "pki", "--add-enroll-token"], {}, d.dir)).code).toBe(0);
  const token = fs.readFileSync(path.join(d.dir, "pki/enroll-token"), "utf8").trim();
  const home = path.join(work, "fresh-host");
  const bindir = fs.mkdtempSync(path.join(work, "bin-"));
  let screen = "";
  const dec = new TextDecoder();
  // A PTY becomes the installer's controlling terminal, which is where it asks (stdin is the script).
  const proc = Bun.spawn(["bash", path.join(ROOT, "install.sh")], {
    env: {
      PATH: `${shim}:${process.env.PATH}`,
      HOME: work,
      FAKE_UNAME_S: "Linux",
      FAKE_UNAME_M: "x86_64",
      TESSERA_BASE_URL: base,
      TESSERA_BINDIR: bindir,
      TESSERA_HOME: home,
      TESSERA_RELEASE_KEY: `${releaseKey}.pub`,
      NO_COLOR: "1",
    },
    terminal: {
      cols: 200,
      rows: 50,
      data: (_t, b) => {
        screen += dec.decode(b);
      },
    },
  });
  const waitFor = async (text: string) => {
    while (!screen.includes(text)) {
      if (proc.exitCode !== null) throw new Error(`installer exited before "${text}":\n${screen}`);
      await Bun.sleep(50);
    }
  };
  await waitFor("Address HOST:PORT (Enter to skip): ");
  proc.terminal!.write(`${d.address}\r`);
  await waitFor("(Enter to link as a guest): ");
  proc.terminal!.write(`${token}\r`);
  expect(await proc.exited).toBe(0);
  expect(screen).toContain(`enrolled as host`);
  // The token is a secret: typed without echo.
  expect(screen).not.toContain(token);
  expect(JSON.parse(fs.readFileSync(path.join(home, "config.json"), "utf8")).coordinator).toBe(d.address);
  expect(fs.existsSync(path.join(home, "host.crt"))).toBe(true);
  expect(d.audit().some((e) => e.event === "host.enrol")).toBe(true);
});

test("no binary for this platform in the release: built from the source tarball with Bun, and it runs", async () => {
  const r = await install({
    TESSERA_VERSION: "v5.0.0",
    TESSERA_SOURCE_URL: `http://127.0.0.1:${server.port}/src.tar.gz`,
  });
  expect(r.err).toContain("release v5.0.0 has no binary for linux-x64; building from source");
  expect(r.code).toBe(0);
  expect(r.got).toEqual([
    "/releases/download/v5.0.0/SHA256SUMS",
    "/releases/download/v5.0.0/SHA256SUMS.sig",
    "/src.tar.gz",
  ]);
  expect(r.runs).toBe("v5.0.0");
});

test("shellcheck finds nothing in install.sh (skipped when shellcheck is not installed)", () => {
  const sc = Bun.which("shellcheck");
  if (!sc) return console.warn("skipped: shellcheck is not installed (apt-get install shellcheck)");
  const r = Bun.spawnSync([sc, "--severity=style", path.join(ROOT, "install.sh")], { stdout: "pipe" });
  expect(r.stdout.toString()).toBe("");
  expect(r.exitCode).toBe(0);
});
