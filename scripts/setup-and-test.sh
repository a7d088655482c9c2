#!/usr/bin/env bash
# One command from a fresh clone to a full test run (unit + end-to-end against the compiled binary).
set -euo pipefail
cd "$(dirname "$0")/.."
source ./scripts/setup.sh
source ./scripts/test-services.sh
bunx tsc --noEmit -p .
bun test
