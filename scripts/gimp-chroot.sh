#!/usr/bin/env bash
# Build (once) and cache a Debian 13 (trixie) chroot with GIMP 3 for the GIMP host tests.
# Prints the chroot's path on stdout; progress goes to
# stderr. Idempotent: a complete chroot built from the same recipe is reused as it is; a
# missing, partial or outdated one is rebuilt beside it and swapped in.
#
#   scripts/gimp-chroot.sh            build if needed, print the path
#   scripts/gimp-chroot.sh --check    print the path if a complete chroot is cached (exit 0),
#                                     else exit 1 without building
#
# Environment: REALSCALE_CACHE (default ~/.cache/realscale-tests) holds gimp-trixie/;
# REALSCALE_GIMP_CHROOT overrides the chroot path; REALSCALE_DEBIAN_MIRROR overrides the
# Debian mirror (default: the one apt on this machine already uses).
#
# Exit status: 0 ready; 77 this machine cannot build it (not root, no debootstrap, no
# mirror, downloads failed): callers may skip; anything else is a bug in this script.
set -euo pipefail

CACHE="${REALSCALE_CACHE:-$HOME/.cache/realscale-tests}"
ROOT="${REALSCALE_GIMP_CHROOT:-$CACHE/gimp-trixie}"
SUITE=trixie
PACKAGES="gimp python3-gi gir1.2-gimp-3.0 gir1.2-gegl-0.4 python3-numpy"
# Bump when the recipe changes: a cached chroot with another recipe is rebuilt.
RECIPE="1 $SUITE minbase $PACKAGES"
STAMP_NAME=.realscale-gimp-chroot

log() { printf 'gimp-chroot: %s\n' "$*" >&2; }
cannot() { log "cannot build the GIMP chroot: $*"; exit 77; }

complete() {
    # A chroot counts only with its stamp (written last), the same recipe, and a GIMP that
    # still starts its Python side (the typelibs the plug-in imports).
    local root="$1"
    [ -f "$root/$STAMP_NAME" ] && [ "$(head -n 1 "$root/$STAMP_NAME")" = "$RECIPE" ] \
        && [ -x "$root/usr/bin/gimp-console-3.0" ] && [ -x "$root/usr/bin/python3" ] \
        && chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin /usr/bin/python3 -c \
            "import gi; gi.require_version('Gimp', '3.0'); gi.require_version('Gegl', '0.4')
from gi.repository import Gimp, Gegl; import numpy" >/dev/null 2>&1
}

if [ "${1:-}" = "--check" ]; then
    if [ "$(id -u)" = 0 ] && complete "$ROOT"; then
        printf '%s\n' "$ROOT"
        exit 0
    fi
    exit 1
fi

[ "$(uname -s)" = Linux ] || cannot "this is $(uname -s), a Debian chroot needs Linux"
[ "$(id -u)" = 0 ] || cannot "chroot and debootstrap need root (running as uid $(id -u))"

mkdir -p "$CACHE" "$(dirname "$ROOT")"
# One build at a time (parallel test runs, several checkouts sharing the cache).
exec 9>"$ROOT.lock"
if command -v flock >/dev/null; then
    flock 9
fi

if complete "$ROOT"; then
    printf '%s\n' "$ROOT"
    exit 0
fi

mirror() {
    # The Debian mirror apt already uses here (deb822 sources first, then one-line lists);
    # security archives are skipped: debootstrap wants the main archive.
    if [ -n "${REALSCALE_DEBIAN_MIRROR:-}" ]; then
        printf '%s\n' "$REALSCALE_DEBIAN_MIRROR"
        return
    fi
    local file uri
    for file in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        uri="$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$file" \
            | grep -v -- '-security' | grep -E '^(https?|file)://' | head -n 1 || true)"
        if [ -n "$uri" ]; then
            printf '%s\n' "${uri%/}"
            return
        fi
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }' \
            "$file" | grep -v -- '-security' | head -n 1 || true)"
        if [ -n "$uri" ]; then
            printf '%s\n' "${uri%/}"
            return
        fi
    done
}

MIRROR="$(mirror)"
[ -n "$MIRROR" ] || cannot "no Debian mirror found in /etc/apt (set REALSCALE_DEBIAN_MIRROR)"

if ! command -v debootstrap >/dev/null; then
    command -v apt-get >/dev/null || cannot "debootstrap is not installed and there is no apt-get"
    log "installing debootstrap on this machine"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends debootstrap; } >&2; then
        cannot "installing debootstrap with apt-get failed"
    fi
fi
[ -e "/usr/share/debootstrap/scripts/$SUITE" ] \
    || cannot "this debootstrap does not know Debian $SUITE (upgrade debootstrap)"

# Build beside the cache and swap in only when complete: an interrupted build leaves no
# half chroot under the final name.
WORK="$ROOT.partial"
rm -rf --one-file-system "$WORK"
started=$SECONDS
log "debootstrap $SUITE from $MIRROR into $WORK (about a minute)"
if ! debootstrap --variant=minbase "$SUITE" "$WORK" "$MIRROR" >"$WORK.log" 2>&1; then
    tail -n 20 "$WORK.log" >&2
    cannot "debootstrap failed (full log: $WORK.log)"
fi
log "installing GIMP 3 into the chroot (about a minute)"
# apt inside a chroot without /proc works for these packages (HOSTS.md); keep docs out.
mkdir -p "$WORK/etc/dpkg/dpkg.cfg.d"
printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' \
    'path-include=/usr/share/doc/*/copyright' >"$WORK/etc/dpkg/dpkg.cfg.d/realscale-nodoc"
# shellcheck disable=SC2086  # the package list is meant to split
if ! chroot "$WORK" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive sh -c \
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES \
         && apt-get clean" >>"$WORK.log" 2>&1; then
    tail -n 20 "$WORK.log" >&2
    cannot "apt-get install in the chroot failed (full log: $WORK.log)"
fi
version="$(chroot "$WORK" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root \
    dpkg-query -W -f '${Version}' gimp 2>/dev/null || true)"
printf '%s\ngimp %s\nbuilt %s\n' "$RECIPE" "$version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    >"$WORK/$STAMP_NAME"
complete "$WORK" || { log "the new chroot does not pass its own check"; exit 1; }

if [ -e "$ROOT" ]; then
    log "replacing the outdated or incomplete chroot at $ROOT"
    rm -rf --one-file-system "$ROOT"
fi
mv "$WORK" "$ROOT"
mv "$WORK.log" "$ROOT.log"
log "GIMP $version ready in $ROOT ($((SECONDS - started)) s)"
printf '%s\n' "$ROOT"
