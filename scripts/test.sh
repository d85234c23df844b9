#!/usr/bin/env bash
# Set up realscale with its test tools and run the whole test suite.
set -euo pipefail
REALSCALE_TEST=1
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
lint=()
for path in core tests plugins bench; do [ -e "$path" ] && lint+=("$path"); done
"$VENV/bin/ruff" check "${lint[@]}"
"$VENV/bin/mypy"  # over core/realscale, configured in pyproject.toml
"$VENV/bin/python" -m pytest "$@"
