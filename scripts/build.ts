// Builds the single executable; CI, the release workflow and the Dockerfile all call this.
//   bun scripts/build.ts                      dist/tessera for this machine (TESSERA_OUTFILE, BUN_TARGET override)
//   bun scripts/build.ts --release [--targets linux-x64,darwin-arm64]
//                                             dist/release/tessera-OS-ARCH[.exe] for each target + SHA256SUMS
//                                             (TESSERA_RELEASE_DIR moves dist/release)
// TESSERA_VERSION (the git tag, e.g. v1.2.3) is compiled in and is what `tessera version` prints.
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import pkg from "../package.json" with { type: "json" };

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
const RELEASE_DIR = process.env.TESSERA_RELEASE_DIR || "dist/release";
const SUMS_FILE = "SHA256SUMS";

const { values: flags } = parseArgs({
  options: { release: { type: "boolean", default: false }, targets: { type: "string" } },
  strict: true,
});

const version = process.env.TESSERA_VERSION || `v${pkg.version}`;
// The version ends up in binaries, checksums and the formula: accept only what a tag should look like.
if (!/^v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/.test(version))
  fail(`TESSERA_VERSION must look like v1.2.3 or v1.2.3-rc.1, not "${version}"`);

if (flags.release) {
  const names = flags.targets
    ? flags.targets
        .split(",")
        .map((t) => t.trim())
        .filter(Boolean)
    : Object.keys(TARGETS);
  const unknown = names.filter((n) => !TARGETS[n]);
  if (unknown.length) fail(`unknown target ${unknown.join(", ")}; known: ${Object.keys(TARGETS).join(", ")}`);
  fs.mkdirSync(RELEASE_DIR, { recursive: true });
  // Only our own leftovers go, so SHA256SUMS never lists a stale asset (and a wrong directory loses nothing else).
  for (const f of fs.readdirSync(RELEASE_DIR))
    if (f.startsWith("tessera-") || f === SUMS_FILE) fs.rmSync(path.join(RELEASE_DIR, f));
  const sums: string[] = [];
  for (const name of names) {
    const asset = `tessera-${name}${name.startsWith("windows-") ? ".exe" : ""}`;
    compile(path.join(RELEASE_DIR, asset), TARGETS[name]);
    sums.push(`${sha256(path.join(RELEASE_DIR, asset))}  ${asset}`);
  }
  // sha256sum's own format, so `sha256sum -c SHA256SUMS` checks a download by hand.
  fs.writeFileSync(path.join(RELEASE_DIR, SUMS_FILE), `${sums.join("\n")}\n`);
  console.log(`wrote ${path.join(RELEASE_DIR, SUMS_FILE)} (${names.length} assets, ${version})`);
} else {
  compile(process.env.TESSERA_OUTFILE || "dist/tessera", process.env.BUN_TARGET);
}

function compile(outfile: string, target: string | undefined): void {
  // --splitting keeps each lazily imported subcommand in its own chunk inside the executable, so
  // `tessera --help` and `--version` parse only the small root chunk (about 3x less CPU at start-up).
  const args = [
    "build",
    "--compile",
    "--minify",
    "--splitting",
    "--sourcemap=none",
    `--define=TESSERA_BUILD_VERSION=${JSON.stringify(version)}`,
    `--outfile=${outfile}`,
  ];
  if (target) args.push(`--target=${target}`);
  args.push("src/main.ts");
  const proc = Bun.spawnSync(["bun", ...args], { stdout: "inherit", stderr: "inherit" });
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
