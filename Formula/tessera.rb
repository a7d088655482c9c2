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
      url "https://github.com/tessera-dev/tessera/releases/download/v0.1.0/tessera-darwin-arm64"
      sha256 "12c54dedce9121dc28cf70292800fecef5737cafb01fa3107ca52dba06653871"
    end
    on_intel do
      url "https://github.com/tessera-dev/tessera/releases/download/v0.1.0/tessera-darwin-x64"
      sha256 "d57185322b732ffe0faff84841848864dfccb3e68357d097dcd0ed9b8bd9d1fe"
    end
  end

  on_linux do
    on_arm do
      url "https://github.com/tessera-dev/tessera/releases/download/v0.1.0/tessera-linux-arm64"
      sha256 "55e1825f876ba3c346a74a90e8a6d581af4bded57e9a05fa5642b95342b3c92f"
    end
    on_intel do
      url "https://github.com/tessera-dev/tessera/releases/download/v0.1.0/tessera-linux-x64"
      sha256 "2af2cf3e5b2397bae2e3e4c26243db73ad60d3028cf50aa432aca5cd43470c31"
    end
  end

  def install
    # The download is the bare executable, staged under its asset name.
    bin.install Dir["tessera-*"].first => "tessera"
  end

  test do
    assert_equal "v#{version}", shell_output("#{bin}/tessera version").strip
  end
end
