#!/usr/bin/env bash
# make-test-root.sh [CACHE]
#
# Builds (once) the Debian 12 root that systemd/live_test.go boots with
# `systemd-nspawn -b`, and prints its path: CACHE/debian12-root-<key> (CACHE defaults to
# .cache/test-root in the repository). The key is a hash of everything that decides the
# root's content (suite, variant, architecture, package list, this script's recipe), so a
# second run finds the root and returns at once; a root with another key is deleted.
#
# The root is made with mmdebstrap (Debian package mmdebstrap), variant minbase plus what a
# box running inferq under systemd has: systemd as PID 1, dbus, adduser (inferq's Depends).
# The security and updates suites come along (mmdebstrap adds them for a stable suite).
# The test boots it read-only with a volatile overlay (--volatile=overlay), so runs never
# change the cached root. Built in a scratch directory next to the result and renamed into
# place, so an interrupted build leaves nothing that looks finished.
#
# Needs root (re-runs itself with sudo otherwise), mmdebstrap and the Debian mirror. The
# root is not updated once built: it changes only when the key does. Set FORCE=1 to rebuild.
set -euo pipefail

SUITE=bookworm
VARIANT=minbase
# What the container needs to boot, plus the .deb's Depends (build-deb.sh: libc6, adduser, libturbojpeg0).
PACKAGES=(systemd systemd-sysv dbus adduser libturbojpeg0)
# Bumped when the recipe below changes in a way the package list does not show.
RECIPE=1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-$here/../.cache/test-root}
die() { echo "make-test-root: $*" >&2; exit 1; }
[ $# -le 1 ] || die "usage: $0 [CACHE]"
if [ "$(id -u)" != 0 ]; then
	# mmdebstrap's root mode, and a root whose files belong to root.
	command -v sudo >/dev/null || die "needs root"
	exec sudo "$0" "$@"
fi
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (Debian package mmdebstrap)"

arch=$(dpkg --print-architecture)
key=$(printf '%s\n' "$SUITE" "$VARIANT" "$arch" "$RECIPE" "${PACKAGES[@]}" | sha256sum | cut -c1-16)
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
root=$cache/debian12-root-$key
# One build at a time (make test-deps and the test itself both call this).
exec 9>"$cache/.lock"
flock 9

if [ "${FORCE:-0}" != 1 ] && [ -f "$root/.complete" ]; then
	echo "$root"
	exit 0
fi

# Roots made from another package list or recipe are stale.
for old in "$cache"/debian12-root-* "$cache"/.building-*; do
	[ -e "$old" ] || continue
	[ "$old" = "$root" ] && [ "${FORCE:-0}" != 1 ] && continue
	rm -rf --one-file-system "$old"
done
rm -rf --one-file-system "$root"

scratch=$cache/.building-$key.$$
trap 'rm -rf --one-file-system "$scratch"' EXIT
start=$(date +%s)
echo "make-test-root: building $SUITE ($VARIANT + ${PACKAGES[*]}) for $arch in $root" >&2
# About 46 MiB of packages (116 of them). The root gets an empty machine-id (nspawn gives
# the container one at boot) and no getty on the console (the test has no terminal).
list=$(IFS=,; echo "${PACKAGES[*]}")
mmdebstrap --quiet --mode=root --variant="$VARIANT" --arch="$arch" --include="$list" \
	--customize-hook=': >"$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
	--customize-hook='chroot "$1" systemctl mask console-getty.service getty@tty1.service >/dev/null 2>&1 || true' \
	"$SUITE" "$scratch" >&2
printf '%s\n' "$SUITE $VARIANT $arch recipe $RECIPE" "${PACKAGES[@]}" >"$scratch/.complete"
mv "$scratch" "$root"
echo "make-test-root: built in $(($(date +%s) - start)) s, $(du -sh --one-file-system "$root" | cut -f1) on disk" >&2
echo "$root"
