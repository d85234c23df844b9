#!/usr/bin/env bash
# Install what the real-Krita tests (tests/hosts/krita) need on Debian 12: Krita 5.1.5 with
# its embedded Python, PyQt5 and sip (only Recommends of krita, so named here), numpy for the
# test driver inside Krita, and a virtual X server. Idempotent: does nothing when all are in.
set -euo pipefail
PACKAGES=(krita python3-pyqt5 python3-sip xvfb xauth python3-numpy)
missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends "${PACKAGES[@]}"
