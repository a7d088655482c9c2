#!/usr/bin/env bash
# One command from a fresh clone to a local end-to-end demo on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
source ./scripts/setup.sh
bun scripts/demo.ts
