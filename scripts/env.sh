# Sourced by the other scripts: make ./.venv with realscale installed (and test tools with
# REALSCALE_TEST=1). Re-running is cheap: pip skips what is already there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REALSCALE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# Pinned: a CPU build of this torch is at hand here, and an unpinned torch would pull a CUDA
# build of several GB. The package itself only asks for a range (see pyproject.toml).
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "${PIP[@]}" "torch==2.13.0"
fi
if [ "${REALSCALE_TEST:-0}" = "1" ]; then
    "${PIP[@]}" -e "$ROOT[torch,video,test]"
else
    "${PIP[@]}" -e "$ROOT[torch,video]"
fi
