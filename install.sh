#!/usr/bin/env bash
# Installs tessera: the release binary for this OS and CPU, checked against the release's SHA256SUMS,
# or a build from source with Bun when the release has no binary for this platform.
#
#   curl -fsSL https://github.com/tessera-dev/tessera/releases/latest/download/install.sh | bash
#
# Environment:
#   TESSERA_VERSION     tag to install, e.g. v0.2.0 (default: the latest release)
#   TESSERA_BINDIR      where to put the binary (default /usr/local/bin as root or when writable, else ~/.local/bin)
#   TESSERA_BASE_URL    releases base URL (default https://github.com/tessera-dev/tessera/releases);
#                       assets come from $BASE/download/$VERSION/; $BASE/latest must redirect to .../tag/$VERSION
#   TESSERA_SOURCE_URL  source tarball for the fallback build (default: the tag's archive on GitHub)
#   TESSERA_SKIP_LINK=1 do not offer to link this machine to a coordinator afterwards
#   TESSERA_FORCE_SOURCE=1  build from source even if a release binary exists
set -euo pipefail

REPO="tessera-dev/tessera"
PROTO='=https'

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
  if [ "${TESSERA_FORCE_SOURCE:-}" != 1 ] && fetch "$url_dir/SHA256SUMS" "$tmp/SHA256SUMS"; then
    local want
    want="$(awk -v a="$asset" '$2 == a || $2 == "*" a { print $1; exit }' "$tmp/SHA256SUMS")"
    if [ -n "$want" ]; then
      [[ "$want" =~ ^[0-9a-f]{64}$ ]] || die "SHA256SUMS has a malformed entry for $asset"
      say "downloading $asset ($version) from $url_dir"
      fetch "$url_dir/$asset" "$tmp/tessera" || die "$url_dir/$asset is listed in SHA256SUMS but could not be downloaded"
      local got
      got="$(sha256_of "$tmp/tessera")"
      if [ "$got" != "$want" ]; then
        die "checksum mismatch for $asset: expected $want, got $got. Nothing was installed; the download may be corrupt or tampered with."
      fi
      say "sha256 verified: $got"
      chmod 0755 "$tmp/tessera"
      # A binary for the right OS and CPU can still fail here (musl libc, too old a kernel or glibc).
      if "$tmp/tessera" version >/dev/null 2>&1; then
        built="$tmp/tessera"
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

# fetch URL FILE: 0 on success, 1 when the server has no such file; other failures stop the install.
fetch() {
  if command -v curl >/dev/null 2>&1; then
    local code
    code="$(curl -sSL --proto "$PROTO" --retry 2 -o "$2" -w '%{http_code}' "$1")" || die "cannot download $1"
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
