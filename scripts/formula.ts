// Writes the Homebrew formula for a release from its SHA256SUMS, so the formula can only name assets
// the release really has, with their real checksums. The release workflow runs it after publishing.
// The formula downloads the compressed archives (tessera-OS-ARCH.tar.gz: `tessera` + THIRD-PARTY-NOTICES),
// about half the size of the bare executables.
//   bun scripts/formula.ts --version v1.2.3 --sums dist/release/SHA256SUMS [--repo owner/name] [--out Formula/tessera.rb]
import fs from "node:fs";
import { parseArgs } from "node:util";

const PLATFORMS = [
  { os: "macos", cpu: "arm", asset: "tessera-darwin-arm64.tar.gz" },
  { os: "macos", cpu: "intel", asset: "tessera-darwin-x64.tar.gz" },
  { os: "linux", cpu: "arm", asset: "tessera-linux-arm64.tar.gz" },
  { os: "linux", cpu: "intel", asset: "tessera-linux-x64.tar.gz" },
] as const;

export function parseSums(text: string): Map<string, string> {
  const sums = new Map<string, string>();
  for (const [i, line] of text.split("\n").entries()) {
    if (!line.trim()) continue;
    const m = /^([0-9a-f]{64}) [ *]([A-Za-z0-9._-]+)$/.exec(line.trim());
    if (!m)
      throw new Error(`SHA256SUMS line ${i + 1} is not "<sha256>  <name>": ${JSON.stringify(line.slice(0, 120))}`);
    sums.set(m[2]!, m[1]!);
  }
  return sums;
}

export function renderFormula(o: { version: string; repo: string; sums: Map<string, string> }): string {
  if (!/^v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/.test(o.version))
    throw new Error(`version must look like v1.2.3, not "${o.version}"`);
  if (!/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(o.repo))
    throw new Error(`repo must look like owner/name, not "${o.repo}"`);
  const missing = PLATFORMS.filter((p) => !o.sums.has(p.asset)).map((p) => p.asset);
  if (missing.length) throw new Error(`SHA256SUMS has no entry for ${missing.join(", ")}`);
  const base = `https://github.com/${o.repo}/releases/download/${o.version}`;
  const block = (os: string) =>
    PLATFORMS.filter((p) => p.os === os)
      .map((p) =>
        [
          `    on_${p.cpu} do`,
          `      url "${base}/${p.asset}"`,
          `      sha256 "${o.sums.get(p.asset)}"`,
          `    end`,
        ].join("\n"),
      )
      .join("\n");
  return `# Homebrew formula for tessera's release binaries, written by scripts/formula.ts from the release's
# SHA256SUMS (the release workflow regenerates it for every tag). Install with:
#   brew tap ${o.repo} https://github.com/${o.repo}
#   brew install tessera
class Tessera < Formula
  desc "Consent-gated remote access: one guest, one port, one session, with your yes"
  homepage "https://github.com/${o.repo}"
  version "${o.version.slice(1)}"

  on_macos do
${block("macos")}
  end

  on_linux do
${block("linux")}
  end

  def install
    # Homebrew unpacks the archive: the executable and the notices of the npm packages bundled in it.
    bin.install "tessera"
    prefix.install "THIRD-PARTY-NOTICES"
  end

  test do
    assert_equal "v#{version}", shell_output("#{bin}/tessera version").strip
  end
end
`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      version: { type: "string" },
      sums: { type: "string" },
      repo: { type: "string", default: "tessera-dev/tessera" },
      out: { type: "string", default: "Formula/tessera.rb" },
    },
    strict: true,
  });
  try {
    if (!values.version || !values.sums) throw new Error("--version and --sums are required");
    const formula = renderFormula({
      version: values.version,
      repo: values.repo!,
      sums: parseSums(fs.readFileSync(values.sums, "utf8")),
    });
    fs.writeFileSync(values.out!, formula);
    console.log(`wrote ${values.out} for ${values.version}`);
  } catch (err) {
    console.error(`formula: ${(err as Error).message}`);
    process.exit(1);
  }
}
