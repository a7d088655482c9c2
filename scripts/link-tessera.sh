#!/usr/bin/env bash
# Puts `tessera` on PATH as a link to this checkout's binary: link-tessera.sh BINDIR TARGET.
# It never repoints a `tessera` it did not make: a real file, or a link to something other than a
# tessera checkout's dist/tessera that still exists, is left alone and said so.
set -euo pipefail
bindir="$1"
target="$2"
link="$bindir/tessera"
if [ -e "$link" ] || [ -L "$link" ]; then
  current="$(readlink "$link" || true)"
  if [ "$current" = "$target" ]; then
    echo "setup: tessera is on PATH ($link -> $target)"
    exit 0
  fi
  # Ours to repoint: a link setup made (to some checkout's dist/tessera) whose checkout is gone.
  if ! { [ -L "$link" ] && [[ "$current" == */dist/tessera ]] && [ ! -e "$current" ]; }; then
    echo "setup: $link already exists${current:+ (-> $current)} and is not this checkout's; left alone."
    echo "setup: run this checkout's binary as $target, or remove $link and run setup again"
    exit 0
  fi
fi
mkdir -p "$bindir"
ln -sfn "$target" "$link"
echo "setup: tessera is on PATH ($link -> $target)"
