#!/usr/bin/env bash
# Set up realscale with its test tools and run the whole test suite.
set -euo pipefail
REALSCALE_TEST=1
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
"$VENV/bin/ruff" check core tests plugins bench
"$VENV/bin/python" -m pytest "$@"
