// The Homebrew formula: generated from a release's SHA256SUMS, naming exactly the archives install.sh
// and the build script use; when Ruby is here, its install and `test do` blocks really run against
// a minimal stand-in for Homebrew's DSL, on a release archive of the compiled binary unpacked as
// Homebrew unpacks it.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { parseSums, renderFormula } from "../scripts/formula.ts";
import { tar } from "../scripts/release/archive.ts";
import { tmpDir } from "./e2e/harness.ts";

setDefaultTimeout(60_000);

const ROOT = path.resolve(import.meta.dir, "..");
const BIN = path.join(ROOT, "dist/tessera");
const ASSETS = [
  "tessera-darwin-arm64.tar.gz",
  "tessera-darwin-x64.tar.gz",
  "tessera-linux-arm64.tar.gz",
  "tessera-linux-x64.tar.gz",
];
const work = tmpDir();
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const fakeSums = (extra = "") =>
  new Map(
    ASSETS.map((a, i) => [
      a,
      createHash("sha256")
        .update(a + extra + i)
        .digest("hex"),
    ]),
  );

test("the checked-in formula is exactly what the generator writes for its own version and checksums", () => {
  const text = fs.readFileSync(path.join(ROOT, "Formula/tessera.rb"), "utf8");
  const version = /^ {2}version "([^"]+)"$/m.exec(text)![1]!;
  const pairs = [...text.matchAll(/url "[^"]+\/(tessera-[a-z0-9-]+\.tar\.gz)"\n\s+sha256 "([0-9a-f]{64})"/g)];
  expect(pairs.map((p) => p[1]).sort()).toEqual([...ASSETS].sort());
  const repo = /brew tap (\S+) /.exec(text)![1]!;
  expect(renderFormula({ version: `v${version}`, repo, sums: new Map(pairs.map((p) => [p[1]!, p[2]!])) })).toBe(text);
  // The same asset names the release build writes and install.sh asks for.
  const build = fs.readFileSync(path.join(ROOT, "scripts/build.ts"), "utf8");
  const install = fs.readFileSync(path.join(ROOT, "install.sh"), "utf8");
  for (const a of ASSETS.map((x) => x.replace("tessera-", "").replace(".tar.gz", "")))
    expect(build).toMatch(new RegExp(`"${a}": "bun-${a}(-baseline)?"`));
  expect(install).toContain('asset="tessera-$platform"');
  expect(install).toContain('local file="$asset.tar.gz"');
  expect(build).toContain("const archive = `tessera-${name}.tar.gz`;");
  expect(install).toContain('echo "$os-$arch"');
});

test("the generator refuses incomplete or malformed input", () => {
  const sums = fakeSums();
  sums.delete("tessera-linux-arm64.tar.gz");
  expect(() => renderFormula({ version: "v1.0.0", repo: "a/b", sums })).toThrow(
    "no entry for tessera-linux-arm64.tar.gz",
  );
  expect(() => renderFormula({ version: "1.0", repo: "a/b", sums: fakeSums() })).toThrow(
    "version must look like v1.2.3",
  );
  expect(() => renderFormula({ version: "v1.0.0", repo: "a b", sums: fakeSums() })).toThrow(
    "repo must look like owner/name",
  );
  expect(() => parseSums("deadbeef  tessera-linux-x64\n")).toThrow("line 1");
  expect(parseSums(`${"a".repeat(64)} *tessera.exe\n\n`).get("tessera.exe")).toBe("a".repeat(64));
});

// Just enough of Homebrew's formula DSL to load the file for one platform, run install, then `test do`.
const BREW_STUB = String.raw`
require "fileutils"
require "json"
OS, CPU, STAGE, PREFIX, FILE = ARGV
class Formula
  class << self
    def spec = (@spec ||= { urls: [], sha256s: [] })
    def desc(s) = spec[:desc] = s
    def homepage(s) = spec[:homepage] = s
    def version(s = nil) = s ? spec[:version] = s : spec[:version]
    def on_macos = (yield if OS == "macos")
    def on_linux = (yield if OS == "linux")
    def on_arm = (yield if CPU == "arm")
    def on_intel = (yield if CPU == "intel")
    def url(u) = spec[:urls] << u
    def sha256(h) = spec[:sha256s] << h
    def test(&blk) = spec[:test] = blk
  end
  def version = self.class.version
  def bin = Bin.new(File.join(PREFIX, "bin"))
  def prefix = Bin.new(PREFIX, 0o644)
  def shell_output(cmd)
    out = IO.popen(cmd, &:read)
    raise "#{cmd} exited #{$?.exitstatus}" unless $?.success?
    out
  end
  def assert_equal(want, got) = (raise "expected #{want.inspect}, got #{got.inspect}" unless want == got)
end
class Bin
  def initialize(dir, mode = 0o755) = (@dir, @mode = dir, mode)
  def to_s = @dir
  def install(*files)
    FileUtils.mkdir_p(@dir)
    files.flat_map { |f| f.is_a?(Hash) ? f.to_a : [[f, File.basename(f)]] }.each do |src, name|
      raise "install: #{src} is not in the staging directory" unless File.file?(src)
      FileUtils.cp(src, File.join(@dir, name))
      FileUtils.chmod(@mode, File.join(@dir, name))
    end
  end
end
load FILE
f = Tessera.new
# Homebrew unpacks a .tar.gz download into the staging directory and runs install there.
archive = Dir[File.join(STAGE, "*.tar.gz")].first
system("tar", "-xzf", archive, "-C", STAGE, exception: true)
File.delete(archive)
Dir.chdir(STAGE) { f.install }
f.instance_eval(&Tessera.spec[:test])
puts JSON.generate(Tessera.spec.except(:test))
`;

test("ruby: the formula parses, picks one archive per platform, installs bin/tessera and its notices, and its test passes", () => {
  const ruby = Bun.which("ruby");
  if (!ruby) return console.warn("skipped: ruby is not installed (the structural checks above still ran)");
  expect(Bun.spawnSync([ruby, "-c", path.join(ROOT, "Formula/tessera.rb")]).stdout.toString()).toContain("Syntax OK");
  // A formula for the version dist/tessera reports, so its `test do` runs the real binary.
  const version = Bun.spawnSync([BIN, "version"]).stdout.toString().trim();
  const formula = path.join(work, "tessera.rb");
  const sums = fakeSums();
  fs.writeFileSync(formula, renderFormula({ version, repo: "tessera-dev/tessera", sums }));
  fs.writeFileSync(path.join(work, "stub.rb"), BREW_STUB);
  // A release archive of this machine's binary (gzip level 1: the format is what matters here, not the size).
  const archive = Bun.gzipSync(
    tar(
      [
        { name: "tessera", data: fs.readFileSync(BIN), mode: 0o755 },
        { name: "THIRD-PARTY-NOTICES", data: new TextEncoder().encode("notices\n"), mode: 0o644 },
      ],
      0,
    ),
    { level: 1 },
  );
  for (const [os, cpu, asset] of [
    ["linux", "intel", "tessera-linux-x64.tar.gz"],
    ["linux", "arm", "tessera-linux-arm64.tar.gz"],
    ["macos", "arm", "tessera-darwin-arm64.tar.gz"],
    ["macos", "intel", "tessera-darwin-x64.tar.gz"],
  ] as const) {
    const stage = fs.mkdtempSync(path.join(work, "stage-"));
    const prefix = fs.mkdtempSync(path.join(work, "prefix-"));
    // Homebrew stages the download under its own name; here it is an archive of this machine's binary.
    fs.writeFileSync(path.join(stage, asset), archive);
    const r = Bun.spawnSync([ruby, path.join(work, "stub.rb"), os, cpu, stage, prefix, formula], { stderr: "pipe" });
    expect(r.stderr.toString()).toBe("");
    expect(r.exitCode).toBe(0);
    const spec = JSON.parse(r.stdout.toString());
    expect(spec.urls).toEqual([`https://github.com/tessera-dev/tessera/releases/download/${version}/${asset}`]);
    expect(spec.sha256s).toEqual([sums.get(asset)]);
    expect(fs.existsSync(path.join(prefix, "bin/tessera"))).toBe(true);
    expect(fs.readFileSync(path.join(prefix, "THIRD-PARTY-NOTICES"), "utf8")).toBe("notices\n");
  }
  // And a binary that reports another version fails the formula's test.
  const wrong = path.join(work, "wrong.rb");
  fs.writeFileSync(wrong, renderFormula({ version: "v0.0.1", repo: "tessera-dev/tessera", sums }));
  const stage = fs.mkdtempSync(path.join(work, "stage-"));
  fs.writeFileSync(path.join(stage, "tessera-linux-x64.tar.gz"), archive);
  const bad = Bun.spawnSync(
    [ruby, path.join(work, "stub.rb"), "linux", "intel", stage, fs.mkdtempSync(path.join(work, "prefix-")), wrong],
    { stderr: "pipe" },
  );
  expect(bad.exitCode).not.toBe(0);
  expect(bad.stderr.toString()).toContain('expected "v0.0.1"');
});
