#!/usr/bin/env bash
# Sets up a fresh machine that has only Node.js and npm: Bun (from the npm registry), dependencies, the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
BUN_VERSION=1.4.4
if ! command -v bun >/dev/null 2>&1 || [ "$(bun --version)" != "$BUN_VERSION" ]; then
  echo "setup: installing bun@$BUN_VERSION from the npm registry"
  if ! npm install -g "bun@$BUN_VERSION" >/dev/null 2>&1; then
    # No write access to the global prefix: keep Bun inside the project instead.
    npm install --no-save --prefix .tools "bun@$BUN_VERSION" >/dev/null
    export PATH="$PWD/.tools/node_modules/.bin:$PATH"
  fi
fi
echo "setup: bun $(bun --version)"
bun install --frozen-lockfile
bun run build
# The Quickstart types `tessera`: link the binary beside bun, whose directory is on PATH already
# (never over a `tessera` that setup did not make: scripts/link-tessera.sh).
bindir="$(dirname "$(command -v bun)")"
if [ -w "$bindir" ]; then
  scripts/link-tessera.sh "$bindir" "$PWD/dist/tessera"
else
  scripts/link-tessera.sh "$HOME/.local/bin" "$PWD/dist/tessera"
  echo "setup: if \`tessera\` is not found, run: export PATH=\"\$HOME/.local/bin:\$PATH\""
fi
