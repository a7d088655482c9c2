// Builds the single executable; CI, the release workflow and the Dockerfile all call this.
//   bun scripts/build.ts                      dist/tessera for this machine (TESSERA_OUTFILE, BUN_TARGET override)
//   bun scripts/build.ts --release [--targets linux-x64,darwin-arm64] [--sign KEYFILE]
//       dist/release/ (TESSERA_RELEASE_DIR moves it), per target: tessera-OS-ARCH[.exe] (the bare
//       executable) and tessera-OS-ARCH.tar.gz (it as `tessera`, plus THIRD-PARTY-NOTICES); then
//       THIRD-PARTY-NOTICES and SHA256SUMS over all of them; with --sign, SHA256SUMS.sig, an OpenSSH
//       signature (namespace tessera-release) made with the private key in KEYFILE.
// TESSERA_VERSION (the git tag, e.g. v1.2.3) is compiled in and is what `tessera version` prints; the
// commit and its date (SOURCE_DATE_EPOCH overrides) go in too, never the clock or a path: two builds of
// one commit are byte-identical (scripts/repro.sh checks it).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import pkg from "../package.json" with { type: "json" };
import { tarGz } from "./release/archive.ts";
import { buildInfo, isoDate } from "./release/build-info.ts";
import { bundledPackages, collectNotices, renderNotices } from "./release/notices.ts";
import { fingerprint, signFile } from "./release/sign.ts";

/** Release asset name suffix -> Bun's compile target. install.sh and the formula use the same names. */
// x64 uses Bun's baseline runtime (x86-64-v2): the default one needs AVX2 and dies with "Illegal
// instruction" on older CPUs and on VMs with a conservative CPU model, which cheap VPSes often are.
const TARGETS: Record<string, string> = {
  "linux-x64": "bun-linux-x64-baseline",
  "linux-arm64": "bun-linux-arm64",
  "darwin-x64": "bun-darwin-x64-baseline",
  "darwin-arm64": "bun-darwin-arm64",
  "windows-x64": "bun-windows-x64-baseline",
};
const ROOT = path.resolve(import.meta.dir, "..");
const RELEASE_DIR = process.env.TESSERA_RELEASE_DIR || "dist/release";
const SUMS_FILE = "SHA256SUMS";
const NOTICES_FILE = "THIRD-PARTY-NOTICES";
const PINNED_KEY = path.join(ROOT, "deploy/release-key.pub");

const { values: flags } = parseArgs({
  options: {
    release: { type: "boolean", default: false },
    targets: { type: "string" },
    sign: { type: "string" },
  },
  strict: true,
});

const version = process.env.TESSERA_VERSION || `v${pkg.version}`;
// The version ends up in binaries, checksums and the formula: accept only what a tag should look like.
if (!/^v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/.test(version))
  fail(`TESSERA_VERSION must look like v1.2.3 or v1.2.3-rc.1, not "${version}"`);
if (flags.sign !== undefined && !flags.release) fail("--sign signs a release's SHA256SUMS: use it with --release");
if (flags.sign !== undefined && !fs.existsSync(flags.sign)) fail(`--sign: no private key at ${flags.sign}`);
let info: ReturnType<typeof buildInfo>;
try {
  info = buildInfo(ROOT);
} catch (err) {
  fail((err as Error).message);
}

if (flags.release) release();
else compile(process.env.TESSERA_OUTFILE || "dist/tessera", process.env.BUN_TARGET);

function release(): void {
  const names = flags.targets
    ? flags.targets
        .split(",")
        .map((t) => t.trim())
        .filter(Boolean)
    : Object.keys(TARGETS);
  const unknown = names.filter((n) => !TARGETS[n]);
  if (unknown.length) fail(`unknown target ${unknown.join(", ")}; known: ${Object.keys(TARGETS).join(", ")}`);
  if (info.epoch === null) fail("a release needs a build date: build from a git checkout or set SOURCE_DATE_EPOCH");
  fs.mkdirSync(RELEASE_DIR, { recursive: true });
  // Only our own leftovers go, so SHA256SUMS never lists a stale asset (and a wrong directory loses nothing else).
  for (const f of fs.readdirSync(RELEASE_DIR))
    if (f.startsWith("tessera-") || [SUMS_FILE, `${SUMS_FILE}.sig`, NOTICES_FILE].includes(f))
      fs.rmSync(path.join(RELEASE_DIR, f));
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-build-"));
  try {
    const bundled = new Set<string>();
    const executables: { name: string; file: string; exe: string }[] = [];
    for (const name of names) {
      const exe = name.startsWith("windows-") ? "tessera.exe" : "tessera";
      const file = `tessera-${name}${name.startsWith("windows-") ? ".exe" : ""}`;
      const metafile = path.join(scratch, `${name}.meta.json`);
      compile(path.join(RELEASE_DIR, file), TARGETS[name], metafile);
      const meta = JSON.parse(fs.readFileSync(metafile, "utf8")) as { inputs: Record<string, unknown> };
      for (const dir of bundledPackages(Object.keys(meta.inputs))) bundled.add(dir);
      executables.push({ name, file, exe });
    }
    const notices = renderNotices(collectNotices(ROOT, bundled), version);
    fs.writeFileSync(path.join(RELEASE_DIR, NOTICES_FILE), notices);
    const assets: string[] = [];
    for (const { name, file, exe } of executables) {
      const archive = `tessera-${name}.tar.gz`;
      const data = tarGz(
        [
          { name: exe, data: fs.readFileSync(path.join(RELEASE_DIR, file)), mode: 0o755 },
          { name: NOTICES_FILE, data: new TextEncoder().encode(notices), mode: 0o644 },
        ],
        info.epoch!,
      );
      fs.writeFileSync(path.join(RELEASE_DIR, archive), data);
      assets.push(file, archive);
    }
    assets.push(NOTICES_FILE);
    // sha256sum's own format, so `sha256sum -c SHA256SUMS` checks a download by hand.
    const sums = assets.map((a) => `${sha256(path.join(RELEASE_DIR, a))}  ${a}`);
    const sumsPath = path.join(RELEASE_DIR, SUMS_FILE);
    fs.writeFileSync(sumsPath, `${sums.join("\n")}\n`);
    console.log(`wrote ${sumsPath} (${assets.length} assets, ${version}, commit ${info.commit.slice(0, 12)})`);
    if (flags.sign !== undefined) sign(sumsPath, flags.sign);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

function sign(sumsPath: string, keyFile: string): void {
  let signed: { publicKey: string; fingerprint: string };
  try {
    signed = signFile(sumsPath, keyFile);
  } catch (err) {
    fail((err as Error).message);
  }
  const pinned = fs.existsSync(PINNED_KEY) ? fingerprint(fs.readFileSync(PINNED_KEY, "utf8")) : null;
  console.log(
    `wrote ${sumsPath}.sig, signed by ${signed.fingerprint}${
      signed.fingerprint === pinned
        ? " (the release key pinned in install.sh)"
        : "; NOT the key in deploy/release-key.pub: install.sh accepts it only with TESSERA_RELEASE_KEY"
    }`,
  );
}

function compile(outfile: string, target: string | undefined, metafile?: string): void {
  // --splitting keeps each lazily imported subcommand in its own chunk inside the executable, so
  // `tessera --help` and `--version` parse only the small root chunk (about 3x less CPU at start-up).
  const args = [
    "build",
    "--compile",
    "--minify",
    "--splitting",
    "--sourcemap=none",
    `--define=TESSERA_BUILD_VERSION=${JSON.stringify(version)}`,
    `--define=TESSERA_BUILD_COMMIT=${JSON.stringify(info.commit)}`,
    `--define=TESSERA_BUILD_DATE=${JSON.stringify(isoDate(info.epoch))}`,
    `--outfile=${path.resolve(outfile)}`,
  ];
  if (target) args.push(`--target=${target}`);
  if (metafile) args.push(`--metafile=${path.resolve(metafile)}`);
  args.push("src/main.ts");
  const proc = Bun.spawnSync(["bun", ...args], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
  if (proc.exitCode !== 0) fail(`bun build failed for ${target ?? "this machine"} (exit ${proc.exitCode})`);
  console.log(`built ${outfile} ${version}${target ? ` for ${target}` : ""}`);
}

function sha256(file: string): string {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

function fail(message: string): never {
  console.error(`build: ${message}`);
  process.exit(1);
}
