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
      sha256 "5c4e424b6f61883b6155814373c5976280624dd76529d41d5343c218439edec9"
    end
    on_intel do
      url "https://github.com/tessera-dev/tessera/releases/download/v0.1.0/tessera-darwin-x64"
      sha256 "0822ca42d237064704b85aa836a96832e96c798689a34a2a84a7558f08b60b63"
    end
  end

  on_linux do
    on_arm do
      url "https://github.com/tessera-dev/tessera/releases/download/v0.1.0/tessera-linux-arm64"
      sha256 "7b1e78e88b5b3c7a94cc99aa585898e1a57d5fdf2177e0dd49720c13328d09bf"
    end
    on_intel do
      url "https://github.com/tessera-dev/tessera/releases/download/v0.1.0/tessera-linux-x64"
      sha256 "02d264baaf3357796770174ac80c7c6fb6ad3ece49e3d680a48d6a696b3521e3"
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
