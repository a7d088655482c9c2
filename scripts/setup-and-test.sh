#!/usr/bin/env bash
# One command from a fresh clone to a full test run (unit + end-to-end against the compiled binary).
set -euo pipefail
cd "$(dirname "$0")/.."
source ./scripts/setup.sh
source ./scripts/test-services.sh
bunx tsc --noEmit -p .
# Formatting and lint (biome.jsonc): a misformatted file or a lint error fails the run here, before the tests.
bun run lint
# Without a terminal (CI, a log file) only failures are printed, each with its error: what survives of a
# long log is its end, and that then holds every failure's message rather than 590 lines of passes.
if [ -t 1 ]; then bun test; else bun test --only-failures; fi
