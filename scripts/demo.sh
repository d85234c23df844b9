#!/usr/bin/env bash
# Set up realscale and upscale the sample picture with the embedded default model.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
mkdir -p "$ROOT/out"
"$VENV/bin/realscale" upscale "$ROOT/docs/images/sample.jpg" -o "$ROOT/out/sample_x4.png" "$@"
"$VENV/bin/realscale" models
echo "Upscaled picture: $ROOT/out/sample_x4.png"
