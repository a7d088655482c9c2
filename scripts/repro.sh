#!/usr/bin/env bash
# Checks that a release build is reproducible: clones one commit twice into fresh directories (paths
# of different lengths), builds `bun scripts/build.ts --release` for this machine's target in each
# with a different time zone, locale and umask, and compares every digest in the two SHA256SUMS.
#
#   scripts/repro.sh [REF]        REF defaults to HEAD; uncommitted changes are not part of the check
#
# Exit 0 and "reproducible" when the digests match; exit 1 naming each file that differs and where.
# TESSERA_VERSION (default v0.0.0-repro) is the tag compiled into both builds; REPRO_TARGETS (e.g.
# linux-x64,darwin-arm64) checks cross-compiled targets too (Bun downloads their runtimes).
set -euo pipefail

say() { printf 'repro: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

root="$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"
ref="${1:-HEAD}"
commit="$(git -C "$root" rev-parse --verify "$ref^{commit}")" || die "no commit $ref"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) target=linux-x64 ;;
  Linux-aarch64 | Linux-arm64) target=linux-arm64 ;;
  Darwin-x86_64) target=darwin-x64 ;;
  Darwin-arm64) target=darwin-arm64 ;;
  *) die "no release target for $(uname -s) $(uname -m)" ;;
esac
target="${REPRO_TARGETS:-$target}"
[ -z "$(git -C "$root" status --porcelain --untracked-files=no)" ] ||
  say "note: uncommitted changes in $root are not checked; this builds commit ${commit:0:12}"

work="$(mktemp -d "${TMPDIR:-/tmp}/tessera-repro.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# build DIR TZ LANG UMASK: a clean clone of the commit, its locked dependencies, one release build.
build() {
  local dir="$1"
  git clone --quiet --no-local --no-checkout "$root" "$dir"
  git -C "$dir" checkout --quiet --detach "$commit"
  (
    cd "$dir"
    umask "$4"
    export TZ="$2" LANG="$3" LC_ALL="$3"
    bun install --frozen-lockfile >"$dir.log" 2>&1
    TESSERA_VERSION="${TESSERA_VERSION:-v0.0.0-repro}" TESSERA_RELEASE_DIR= \
      bun scripts/build.ts --release --targets "$target" >>"$dir.log" 2>&1
  ) || { cat "$dir.log" >&2; die "the build in $dir failed"; }
}

say "building ${commit:0:12} for $target twice"
build "$work/a" UTC C 022
build "$work/second-clone-with-a-longer-path" Pacific/Kiritimati C.UTF-8 077
a="$work/a/dist/release"
b="$work/second-clone-with-a-longer-path/dist/release"
cat "$a/SHA256SUMS"
if cmp -s "$a/SHA256SUMS" "$b/SHA256SUMS"; then
  say "reproducible: both builds of ${commit:0:12} gave the digests above"
  exit 0
fi
say "NOT reproducible: the second build gave"
cat "$b/SHA256SUMS" >&2
while read -r _ name; do
  if ! cmp -s "$a/$name" "$b/$name"; then
    say "$name differs: $(cmp "$a/$name" "$b/$name" 2>&1 | head -1); $(cmp -l "$a/$name" "$b/$name" 2>/dev/null | wc -l) bytes differ"
  fi
done <"$a/SHA256SUMS"
exit 1
