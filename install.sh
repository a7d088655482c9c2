#!/usr/bin/env bash
# Installs tessera: the release archive for this OS and CPU, checked against the release's SHA256SUMS,
# which must carry a valid OpenSSH signature by the tessera release key pinned below; or a build from
# source with Bun when the release has no binary for this platform.
#
#   curl -fsSL https://github.com/tessera-dev/tessera/releases/latest/download/install.sh | bash
#
# Nothing is installed unless SHA256SUMS.sig verifies (`ssh-keygen -Y verify`, OpenSSH 8.1 or newer,
# namespace tessera-release) against the release key, and the downloaded archive matches its entry.
#
# Environment:
#   TESSERA_VERSION     tag to install, e.g. v0.2.0 (default: the latest release)
#   TESSERA_BINDIR      where to put the binary (default /usr/local/bin as root or when writable, else ~/.local/bin)
#   TESSERA_BASE_URL    releases base URL (default https://github.com/tessera-dev/tessera/releases);
#                       assets come from $BASE/download/$VERSION/; $BASE/latest must redirect to .../tag/$VERSION
#   TESSERA_RELEASE_KEY path of an OpenSSH public key file that replaces the pinned release key (for tests,
#                       and for forks that sign their own releases)
#   TESSERA_INSECURE_SKIP_SIGNATURE=1  install without checking the signature (where ssh-keygen is missing or
#                       older than OpenSSH 8.1); the checksums are then only as trustworthy as the server
#   TESSERA_SOURCE_URL  source tarball for the fallback build (default: the tag's archive on GitHub)
#   TESSERA_SKIP_LINK=1 do not offer to link this machine to a coordinator afterwards
#   TESSERA_FORCE_SOURCE=1  build from source even if a release binary exists
set -euo pipefail

REPO="tessera-dev/tessera"
PROTO='=https'
# The release key (deploy/release-key.pub; also in README.md and SECURITY.md). It is here, not on the
# download server, so whoever can change a release cannot also change what vouches for it.
RELEASE_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJR79DUIxSX+cY0+geZNaicLZZdNlAqpQcO4A6eqNpRa tessera-release'
SIG_NAMESPACE=tessera-release

say() { printf 'tessera-install: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Everything runs from main() at the very end, so a download cut short never runs half a script.
main() {
  local version="${TESSERA_VERSION:-latest}"
  local base="${TESSERA_BASE_URL:-https://github.com/$REPO/releases}"
  base="${base%/}"
  if [ "$version" != latest ] && ! is_tag "$version"; then
    die "TESSERA_VERSION must be a tag like v1.2.3, not \"$version\""
  fi
  # The checksums come from the same server as the binary: that server must at least be authenticated.
  case "$base" in
    https://*) PROTO='=https' ;;
    http://127.0.0.1[:/]* | http://localhost[:/]* | http://\[::1\][:/]*) PROTO='=http,https' ;;
    *) die "TESSERA_BASE_URL must be an https:// URL (plain http only on loopback), not $base" ;;
  esac
  local platform asset url_dir
  platform="$(detect_platform)"
  asset="tessera-$platform"
  if [ "$version" = latest ]; then
    # GitHub answers /latest with a redirect to /tag/vX.Y.Z; no release at all leaves "latest".
    version="$(resolve_latest "$base")" || version=latest
  fi
  url_dir="$base/download/$version"

  local bindir
  bindir="$(choose_bindir)"
  mkdir -p "$bindir" || die "cannot create $bindir (set TESSERA_BINDIR to a directory you can write)"
  [ -w "$bindir" ] || die "$bindir is not writable: run as root, or set TESSERA_BINDIR=\$HOME/.local/bin"

  local tmp
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/tessera-install.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: $tmp is local and gone by the time the trap runs
  trap "rm -rf '$tmp'" EXIT

  local built=""
  if [ "${TESSERA_FORCE_SOURCE:-}" != 1 ] && fetch "$url_dir/SHA256SUMS" "$tmp/SHA256SUMS" 65536; then
    # Before any line of SHA256SUMS is believed, its signature must verify.
    verify_signature "$url_dir" "$tmp" "$asset"
    # The compressed asset; a bare executable only for releases made before there were archives.
    local file="$asset.tar.gz" want
    want="$(sum_for "$file" "$tmp/SHA256SUMS")"
    if [ -z "$want" ]; then
      file="$asset"
      want="$(sum_for "$file" "$tmp/SHA256SUMS")"
    fi
    if [ -n "$want" ]; then
      [[ "$want" =~ ^[0-9a-f]{64}$ ]] || die "SHA256SUMS has a malformed entry for $file"
      say "downloading $file ($version) from $url_dir"
      fetch "$url_dir/$file" "$tmp/$file" || die "$url_dir/$file is listed in SHA256SUMS but could not be downloaded"
      local got
      got="$(sha256_of "$tmp/$file")"
      if [ "$got" != "$want" ]; then
        die "checksum mismatch for $file: expected $want, got $got. Nothing was installed; the download may be corrupt or tampered with."
      fi
      say "sha256 verified: $got"
      local bin="$tmp/$file"
      if [ "$file" != "$asset" ]; then
        mkdir -p "$tmp/unpacked"
        tar -xzf "$tmp/$file" -C "$tmp/unpacked" tessera || die "cannot unpack $file (needs tar and gzip)"
        bin="$tmp/unpacked/tessera"
      fi
      chmod 0755 "$bin"
      # A binary for the right OS and CPU can still fail here (musl libc, too old a kernel or glibc).
      if "$bin" version >/dev/null 2>&1; then
        built="$bin"
      else
        say "the release binary for $platform does not run on this system; building from source"
      fi
    else
      say "release $version has no binary for $platform; building from source"
    fi
  else
    [ "${TESSERA_FORCE_SOURCE:-}" = 1 ] || say "no release found at $url_dir; building from source"
  fi
  [ -n "$built" ] || built="$(build_from_source "$version" "$tmp")"

  chmod 0755 "$built"
  "$built" version >/dev/null || die "the binary built here does not run: $built"
  # Install via a temporary name and rename, so a running tessera is never left half-written.
  cp "$built" "$bindir/.tessera.new.$$"
  mv -f "$bindir/.tessera.new.$$" "$bindir/tessera"
  local installed
  installed="$("$bindir/tessera" version)"
  say "installed tessera $installed to $bindir/tessera"
  case ":$PATH:" in
    *":$bindir:"*) ;;
    *) say "note: $bindir is not on your PATH; add it, e.g. echo 'export PATH=\"$bindir:\$PATH\"' >> ~/.profile" ;;
  esac
  offer_link "$bindir/tessera"
}

is_tag() {
  [[ "$1" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]
}

sum_for() {
  awk -v a="$1" '$2 == a || $2 == "*" a { print $1; exit }' "$2"
}

# verify_signature URL_DIR TMP ASSET: returns only when $TMP/SHA256SUMS carries a good signature by the
# release key (or the user chose TESSERA_INSECURE_SKIP_SIGNATURE=1); otherwise stops, installing nothing.
verify_signature() {
  local url_dir="$1" tmp="$2" asset="$3"
  if [ "${TESSERA_INSECURE_SKIP_SIGNATURE:-}" = 1 ]; then
    say "WARNING: TESSERA_INSECURE_SKIP_SIGNATURE=1: SHA256SUMS is NOT checked against the release key;"
    say "WARNING: whoever can change the files at $url_dir can change what is installed"
    return 0
  fi
  local key
  if [ -n "${TESSERA_RELEASE_KEY:-}" ]; then
    [ -r "$TESSERA_RELEASE_KEY" ] || die "TESSERA_RELEASE_KEY=$TESSERA_RELEASE_KEY is not a readable file"
    key="$(grep -v -e '^#' -e '^[[:space:]]*$' "$TESSERA_RELEASE_KEY" | head -n 1)"
  else
    key="$RELEASE_KEY"
  fi
  [[ "$key" =~ ^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa|sk-[a-z0-9@.-]+)\ [A-Za-z0-9+/]+=*(\ .*)?$ ]] ||
    die "${TESSERA_RELEASE_KEY:-the pinned release key} is not an OpenSSH public key (ssh-ed25519 AAAA...)"
  local words
  read -ra words <<<"$key"
  key="${words[0]} ${words[1]}" # type and key; a comment is no part of it
  command -v ssh-keygen >/dev/null 2>&1 || no_verifier "ssh-keygen is not installed" "$url_dir" "$asset" "$key"
  fetch "$url_dir/SHA256SUMS.sig" "$tmp/SHA256SUMS.sig" 65536 ||
    die "release at $url_dir has no signature (SHA256SUMS.sig): nothing was installed. An official release is always signed; do not install an unsigned one."
  printf '%s namespaces="%s" %s\n' "$SIG_NAMESPACE" "$SIG_NAMESPACE" "$key" >"$tmp/allowed_signers"
  local out
  if out="$(ssh-keygen -Y verify -f "$tmp/allowed_signers" -I "$SIG_NAMESPACE" -n "$SIG_NAMESPACE" \
    -s "$tmp/SHA256SUMS.sig" <"$tmp/SHA256SUMS" 2>&1)"; then
    # ssh-keygen names the key's fingerprint: 'Good "tessera-release" signature ... with ED25519 key SHA256:...'.
    say "signature verified: ${out//$'\n'/ }"
    return 0
  fi
  case "$out" in
    *"illegal option"* | *"unknown option"* | *"invalid option"* | *[Uu]sage:*)
      no_verifier "this ssh-keygen cannot verify signatures (it needs OpenSSH 8.1 or newer)" "$url_dir" "$asset" "$key" ;;
  esac
  die "bad signature: SHA256SUMS.sig does not verify SHA256SUMS against the release key, so SHA256SUMS was changed after signing or signed by someone else. Nothing was installed. (ssh-keygen: ${out//$'\n'/ })"
}

# no_verifier WHY URL_DIR ASSET KEY: refuses, and says how to check the release by hand elsewhere.
no_verifier() {
  local why="$1" url_dir="$2" asset="$3" key="$4"
  say "error: $why, so the release signature cannot be checked here. Nothing was installed."
  say "To verify by hand on a machine with OpenSSH 8.1 or newer:"
  say "  curl -fLO $url_dir/SHA256SUMS -fLO $url_dir/SHA256SUMS.sig -fLO $url_dir/$asset.tar.gz"
  say "  echo '$SIG_NAMESPACE namespaces=\"$SIG_NAMESPACE\" $key' > allowed_signers"
  say "  ssh-keygen -Y verify -f allowed_signers -I $SIG_NAMESPACE -n $SIG_NAMESPACE -s SHA256SUMS.sig < SHA256SUMS"
  say "  sha256sum -c --ignore-missing SHA256SUMS    # shasum -a 256 -c on macOS"
  say "  tar -xzf $asset.tar.gz tessera && install -m 0755 tessera /usr/local/bin/tessera"
  say "Or accept the unsigned checksums: rerun with TESSERA_INSECURE_SKIP_SIGNATURE=1 (not recommended)."
  exit 1
}

resolve_latest() {
  command -v curl >/dev/null 2>&1 || return 1
  local final tag
  final="$(curl -sSL --proto "$PROTO" -o /dev/null -w '%{url_effective}' "$1/latest")" || return 1
  tag="${final##*/tag/}"
  [ "$tag" != "$final" ] && is_tag "$tag" && echo "$tag"
}

detect_platform() {
  local os arch
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    MINGW* | MSYS* | CYGWIN*) die "on Windows, download tessera-windows-x64.exe from the release page instead" ;;
    *) die "unsupported OS $(uname -s): tessera ships for Linux and macOS" ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "unsupported CPU $(uname -m): tessera ships for x86_64 and arm64" ;;
  esac
  # An x64 shell under Rosetta on Apple silicon still gets the native binary.
  if [ "$os" = darwin ] && [ "$arch" = x64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0)" = 1 ]; then
    arch=arm64
  fi
  echo "$os-$arch"
}

choose_bindir() {
  if [ -n "${TESSERA_BINDIR:-}" ]; then
    echo "$TESSERA_BINDIR"
  elif [ "$(id -u)" = 0 ] || [ -w /usr/local/bin ]; then
    echo /usr/local/bin
  else
    echo "$HOME/.local/bin"
  fi
}

# fetch URL FILE [MAXBYTES]: 0 on success, 1 when the server has no such file; other failures stop the install.
fetch() {
  if command -v curl >/dev/null 2>&1; then
    local code limit=()
    [ -z "${3:-}" ] || limit=(--max-filesize "$3")
    # ${limit[@]+...}: an empty array under set -u is an error in macOS's bash 3.2.
    code="$(curl -sSL --proto "$PROTO" --retry 2 ${limit[@]+"${limit[@]}"} -o "$2" -w '%{http_code}' "$1")" ||
      die "cannot download $1${3:+ (or it is larger than $3 bytes)}"
    case "$code" in
      2??) return 0 ;;
      404) return 1 ;;
      *) die "downloading $1 failed with HTTP $code" ;;
    esac
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    die "neither curl nor wget is installed"
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | awk '{ print $1 }'
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | awk '{ print $1 }'
  else
    die "need sha256sum or shasum to verify the download"
  fi
}

# build_from_source VERSION TMP: prints the path of the built binary.
build_from_source() {
  local version="$1" tmp="$2"
  command -v bun >/dev/null 2>&1 || die "building from source needs Bun (https://bun.sh, or: npm install -g bun), then run this again"
  local ref="$version" src_url
  [ "$version" != latest ] || ref=main
  # Only a tag names a source tarball on GitHub; "latest" with no release means the main branch.
  if [ "$version" = latest ]; then
    src_url="${TESSERA_SOURCE_URL:-https://github.com/$REPO/archive/refs/heads/main.tar.gz}"
  else
    src_url="${TESSERA_SOURCE_URL:-https://github.com/$REPO/archive/refs/tags/$version.tar.gz}"
  fi
  say "fetching source $src_url"
  fetch "$src_url" "$tmp/src.tar.gz" || die "no source at $src_url"
  mkdir -p "$tmp/src"
  tar -xzf "$tmp/src.tar.gz" -C "$tmp/src" --strip-components=1 || die "$src_url is not a source tarball"
  [ -f "$tmp/src/scripts/build.ts" ] || die "$src_url does not contain scripts/build.ts"
  say "building with bun $(bun --version) (ref $ref)"
  local tag=""
  [ "$version" = latest ] || tag="$version"
  (
    cd "$tmp/src"
    bun install --frozen-lockfile >&2
    TESSERA_VERSION="$tag" TESSERA_OUTFILE="$tmp/src/dist/tessera" bun scripts/build.ts >&2
  ) || die "the source build failed (see above)"
  echo "$tmp/src/dist/tessera"
}

# Offers `tessera link` once, on a machine that has never linked, when someone is at a terminal.
offer_link() {
  local bin="$1"
  [ "${TESSERA_SKIP_LINK:-}" != 1 ] || return 0
  local home
  if [ -n "${TESSERA_HOME:-}" ]; then home="$TESSERA_HOME"
  elif [ "$(uname -s)" = Darwin ]; then home="$HOME/Library/Application Support/tessera"
  else home="${XDG_CONFIG_HOME:-$HOME/.config}/tessera"
  fi
  [ ! -f "$home/config.json" ] || return 0
  # Piped into bash, stdin is this script: talk to the terminal itself, or not at all.
  { : </dev/tty; } 2>/dev/null || { say "next: tessera link HOST:PORT (see tessera link --help)"; return 0; }
  local addr token
  printf 'Link this machine to a coordinator now? Address HOST:PORT (Enter to skip): ' >/dev/tty
  read -r addr </dev/tty || addr=""
  [ -n "$addr" ] || { say "skipped; later: tessera link HOST:PORT"; return 0; }
  printf 'Host enrolment token from the operator (Enter to link as a guest): ' >/dev/tty
  # The token is a secret: no echo.
  read -rs token </dev/tty || token=""
  printf '\n' >/dev/tty
  if [ -n "$token" ]; then
    "$bin" link "$addr" --token "$token" </dev/tty || say "link failed; run it again with: tessera link $addr --token TOKEN"
  else
    "$bin" link "$addr" </dev/tty || say "link failed; run it again with: tessera link $addr --ca-pin sha256:..."
  fi
}

main "$@"
