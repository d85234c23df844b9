#!/usr/bin/env bash
# Build (once) and cache a Debian chroot holding the real hosts of one Debian release, for the
# host tests (tests/hosts). Prints the chroot's path on stdout; progress goes to stderr.
# Idempotent: a complete chroot built from the same recipe is reused as it is; a missing,
# partial or outdated one is rebuilt beside it and swapped in. One build of a name at a time
# (a lock file beside it), so parallel test runs share one build.
#
#   scripts/host-chroot.sh NAME          build if needed, print the path
#   scripts/host-chroot.sh NAME --check  print the path if a complete chroot is cached (exit 0),
#                                        else exit 1 without building
#   scripts/host-chroot.sh --all         build every chroot (CI does this before the tests)
#
# NAME and what it holds (Debian packages, no recommends):
#   trixie        GIMP 3.0.4 and Krita 5.2.9 (Qt5)
#   sid           GIMP 3.2.6 and Krita 5.3.4 (Qt5)
#   experimental  sid plus Krita 6.0.4 (Qt6, PyQt6) from experimental; made from a copy of sid
#
# Environment: REALSCALE_CACHE (default ~/.cache/realscale-tests) holds host-NAME/;
# REALSCALE_DEBIAN_MIRROR overrides the Debian mirror (default: the one apt here already uses).
#
# Exit status: 0 ready; 77 this machine cannot build it (not root, no debootstrap, no mirror,
# downloads failed): callers may skip; 2 usage; anything else is a bug in this script.
set -euo pipefail

CACHE="${REALSCALE_CACHE:-$HOME/.cache/realscale-tests}"
STAMP_NAME=.realscale-host-chroot
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

GIMP_PACKAGES="gimp python3-gi gir1.2-gimp-3.0 gir1.2-gegl-0.4"
KRITA_PACKAGES="krita python3-pyqt5"
COMMON_PACKAGES="python3-numpy xvfb xauth"

log() { printf 'host-chroot: %s\n' "$*" >&2; }
cannot() { log "cannot build the $NAME chroot: $*"; exit 77; }
usage() { log "usage: host-chroot.sh trixie|sid|experimental [--check] | --all"; exit 2; }

if [ "${1:-}" = "--all" ]; then
    for name in trixie sid experimental; do
        bash "$HERE/host-chroot.sh" "$name" >/dev/null
    done
    exit 0
fi

NAME="${1:-}"
case "$NAME" in
    trixie)
        SUITE=trixie
        PACKAGES="$GIMP_PACKAGES $KRITA_PACKAGES $COMMON_PACKAGES"
        CHECK_BINARIES="gimp-console-3.0 krita"
        ;;
    sid)
        SUITE=sid
        PACKAGES="$GIMP_PACKAGES $KRITA_PACKAGES $COMMON_PACKAGES"
        CHECK_BINARIES="gimp-console-3.2 krita"
        ;;
    experimental)
        SUITE=sid
        PACKAGES="krita python3-pyqt6"
        CHECK_BINARIES="krita"
        ;;
    *) usage ;;
esac
ROOT="$CACHE/host-$NAME"
# Bump when a recipe changes: a cached chroot with another recipe is rebuilt.
RECIPE="1 $NAME $SUITE minbase $PACKAGES"

python_check() {
    # The Python modules the hosts' plug-ins import, as each host would import them.
    case "$NAME" in
        trixie|sid) printf '%s' "import gi; gi.require_version('Gimp', '3.0'); \
gi.require_version('Gegl', '0.4'); from gi.repository import Gimp, Gegl; import numpy; \
import PyQt5.QtCore" ;;
        experimental) printf '%s' "import PyQt6.QtCore; import numpy" ;;
    esac
}

complete() {
    # A chroot counts only with its stamp (written last), the same recipe, the hosts'
    # programs, and a Python that still imports what the plug-ins import.
    local root="$1" binary
    [ -f "$root/$STAMP_NAME" ] && [ "$(head -n 1 "$root/$STAMP_NAME")" = "$RECIPE" ] \
        || return 1
    for binary in $CHECK_BINARIES; do
        [ -x "$root/usr/bin/$binary" ] || return 1
    done
    chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin /usr/bin/python3 -c "$(python_check)" \
        >/dev/null 2>&1
}

if [ "${2:-}" = "--check" ]; then
    if [ "$(id -u)" = 0 ] && complete "$ROOT"; then
        printf '%s\n' "$ROOT"
        exit 0
    fi
    exit 1
fi

[ "$(uname -s)" = Linux ] || cannot "this is $(uname -s), a Debian chroot needs Linux"
[ "$(id -u)" = 0 ] || cannot "chroot and debootstrap need root (running as uid $(id -u))"

mkdir -p "$CACHE"
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

in_chroot() {
    # apt and dpkg inside the chroot with a clean environment. sid's and experimental's
    # Release files on a mirror can be weeks old: do not let apt refuse them as expired.
    local root="$1"
    shift
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive sh -c "$*"
}
APT="apt-get -o Acquire::Check-Valid-Until=false -y -qq --no-install-recommends"

MIRROR="$(mirror)"
[ -n "$MIRROR" ] || cannot "no Debian mirror found in /etc/apt (set REALSCALE_DEBIAN_MIRROR)"

# Build beside the cache and swap in only when complete: an interrupted build leaves no half
# chroot under the final name.
WORK="$ROOT.partial"
rm -rf --one-file-system "$WORK"
started=$SECONDS

if [ "$NAME" = experimental ]; then
    # Krita 6 from experimental needs sid underneath: start from a copy of the sid chroot
    # (built first if needed). --one-file-system: never descend into a mounted /proc.
    sid_root="$(bash "$HERE/host-chroot.sh" sid)" || exit $?
    log "copying $sid_root to $WORK"
    exec 8>"$sid_root.lock"
    command -v flock >/dev/null && flock 8
    cp -a --one-file-system "$sid_root" "$WORK"
    exec 8>&-
    rm -f "$WORK/$STAMP_NAME"
    printf 'deb %s experimental main\n' "$MIRROR" >"$WORK/etc/apt/sources.list.d/experimental.list"
    log "installing Krita 6 from experimental into the copy (a few minutes)"
    if ! in_chroot "$WORK" "apt-get -o Acquire::Check-Valid-Until=false update -qq \
            && $APT -t experimental install $PACKAGES && apt-get clean" >"$WORK.log" 2>&1; then
        tail -n 20 "$WORK.log" >&2
        cannot "apt-get install from experimental failed (full log: $WORK.log)"
    fi
else
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
    log "debootstrap $SUITE from $MIRROR into $WORK (about a minute)"
    if ! debootstrap --variant=minbase "$SUITE" "$WORK" "$MIRROR" >"$WORK.log" 2>&1; then
        tail -n 20 "$WORK.log" >&2
        cannot "debootstrap failed (full log: $WORK.log)"
    fi
    # Keep documentation out of the chroot (copyright files stay).
    mkdir -p "$WORK/etc/dpkg/dpkg.cfg.d"
    printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' \
        'path-include=/usr/share/doc/*/copyright' >"$WORK/etc/dpkg/dpkg.cfg.d/realscale-nodoc"
    log "installing the hosts into the chroot (a few minutes)"
    if ! in_chroot "$WORK" "apt-get -o Acquire::Check-Valid-Until=false update -qq \
            && $APT install $PACKAGES && apt-get clean" >>"$WORK.log" 2>&1; then
        tail -n 20 "$WORK.log" >&2
        cannot "apt-get install in the chroot failed (full log: $WORK.log)"
    fi
fi

versions="$(in_chroot "$WORK" "dpkg-query -W -f '\${Package} \${Version}\n' gimp krita 2>/dev/null" \
    || true)"
printf '%s\n%s\nbuilt %s\n' "$RECIPE" "$versions" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    >"$WORK/$STAMP_NAME"
complete "$WORK" || { log "the new $NAME chroot does not pass its own check"; exit 1; }

if [ -e "$ROOT" ]; then
    log "replacing the outdated or incomplete chroot at $ROOT"
    rm -rf --one-file-system "$ROOT"
fi
mv "$WORK" "$ROOT"
mv "$WORK.log" "$ROOT.log"
log "$NAME ready in $ROOT ($((SECONDS - started)) s): $(echo "$versions" | tr '\n' ' ')"
printf '%s\n' "$ROOT"
