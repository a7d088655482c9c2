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
# Coverage goes to coverage/lcov.info and is summed per folder of src/ (scripts/coverage-rooms.ts): the table
# is printed whether or not a test failed, and the run's status is the tests' own.
rm -rf coverage
cover=(--coverage --coverage-reporter=lcov --coverage-dir=coverage)
status=0
if [ -t 1 ]; then bun test "${cover[@]}" || status=$?; else bun test --only-failures "${cover[@]}" || status=$?; fi
bun scripts/coverage-rooms.ts coverage/lcov.info || true
exit "$status"
