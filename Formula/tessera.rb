# Homebrew formula for tessera's release binaries, written by scripts/formula.ts from the release's
# SHA256SUMS (the release workflow regenerates it for every tag). Install with:
#   brew tap tessera-dev/tessera https://github.com/tessera-dev/tessera
#   brew install tessera
class Tessera < Formula
  desc "Consent-gated remote access: one guest, one port, one session, with your yes"
  homepage "https://github.com/tessera-dev/tessera"
  version "0.1.0"

  on_macos do
    on_arm do
      url "https://github.com/tessera-dev/tessera/releases/download/v0.1.0/tessera-darwin-arm64.tar.gz"
      sha256 "fdb0ef66d3147515353793eac787914fd08d0965af1bca7211c76f8770683305"
    end
    on_intel do
      url "https://github.com/tessera-dev/tessera/releases/download/v0.1.0/tessera-darwin-x64.tar.gz"
      sha256 "8d45c2b028efc128042b5ed24a877273952a760ec605fdaa7c744eea7ffbf365"
    end
  end

  on_linux do
    on_arm do
      url "https://github.com/tessera-dev/tessera/releases/download/v0.1.0/tessera-linux-arm64.tar.gz"
      sha256 "09af71e794b630f6dd96e38c608094cb26119eb05609bcdbeee9e47166a04ebb"
    end
    on_intel do
      url "https://github.com/tessera-dev/tessera/releases/download/v0.1.0/tessera-linux-x64.tar.gz"
      sha256 "faf2123a869c2fefa048171823e39110102b41f2bab082f83152b6c0d437e2ca"
    end
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
