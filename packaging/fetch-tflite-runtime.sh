#!/usr/bin/env bash
# fetch-tflite-runtime.sh DEST [ARCH]
#
# Fetches Debian sid's TensorFlow Lite 2.14.1 C library (libtensorflow-lite2.14.1), and the
# engine child's JPEG decoder (libturbojpeg0), with its
# whole run-time dependency closure (sid's libc6, libstdc++6, abseil, ...) and unpacks it
# under DEST, without touching the system: apt runs with a private sources list, a private
# state/cache directory and an empty dpkg status, so it resolves the full closure from sid
# at fetch time (no hard-coded versions); `apt-get download` fetches the .debs, checking
# each against the SHA256 in sid's signed package index, and `dpkg -x` unpacks them.
# What was fetched (package, version, architecture, the .deb's sha256) goes to DEST/MANIFEST.
#
# ARCH is the Debian architecture, amd64 or arm64 (default: this machine's). The private
# apt configuration names it as its only architecture, so fetching arm64 on an amd64 box
# needs no `dpkg --add-architecture` and leaves the system's apt alone.
#
# The result runs under sid's own dynamic loader, so it works on Debian 12 (glibc 2.36):
#   DEST/usr/lib64/ld-linux-x86-64.so.2 --library-path DEST/usr/lib/x86_64-linux-gnu PROGRAM
#   DEST/usr/lib/ld-linux-aarch64.so.1 --library-path DEST/usr/lib/aarch64-linux-gnu PROGRAM
# and inferq's engine child is started that way when runtime_dir points at DEST. DEST also
# gets the merged-/usr links (lib -> usr/lib, lib64 -> usr/lib64), so it serves as the
# sysroot of user-mode emulation: qemu-aarch64-static -L DEST ./inferq-arm64 ...
#
# Idempotent: when DEST/MANIFEST exists and the smoke run passes, it exits at once.
# Set FORCE=1 to fetch again. Needs apt-get, dpkg and network access to the Debian mirror;
# for a foreign ARCH the smoke run needs qemu-user-static (qemu-aarch64-static).
set -euo pipefail

PKG=libtensorflow-lite2.14.1
SONAME=libtensorflow-lite.so.2.14.1
# The engine child's JPEG decoder comes with the closure too (found there first), so an
# emulated arm64 child decodes as a native one does.
EXTRA=(libturbojpeg0)
TURBO=libturbojpeg.so.0
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

die() { echo "fetch-tflite-runtime: $*" >&2; exit 1; }
[ $# -eq 1 ] || [ $# -eq 2 ] || die "usage: $0 DEST [ARCH]"
dest=$1

debarch() {
	case "$1" in
	amd64 | x86_64) echo amd64 ;;
	arm64 | aarch64) echo arm64 ;;
	*) echo "$1" ;;
	esac
}
host=$(debarch "$(dpkg --print-architecture 2>/dev/null || uname -m)")
arch=$(debarch "${2:-$host}")
case "$arch" in
amd64) triplet=x86_64-linux-gnu loader=usr/lib64/ld-linux-x86-64.so.2 qemu=qemu-x86_64-static ;;
arm64) triplet=aarch64-linux-gnu loader=usr/lib/ld-linux-aarch64.so.1 qemu=qemu-aarch64-static ;;
*) die "unsupported architecture $arch: only amd64 and arm64 are handled" ;;
esac
# A foreign closure's loader runs under user-mode emulation, invoked explicitly (binfmt
# registration is not needed).
emu=()
if [ "$arch" != "$host" ]; then
	command -v "$qemu" >/dev/null ||
		die "$qemu is needed to check a $arch runtime on $host (Debian package qemu-user-static)"
	emu=("$(command -v "$qemu")")
fi
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
libdir=$dest/usr/lib/$triplet

# smoke runs sid's loader on the library itself through a tiny dlopen check: the loader
# can list the library's dependencies (--list) only if the whole closure resolves.
smoke() {
	[ -x "$dest/$loader" ] || return 1
	[ -e "$libdir/$SONAME" ] || return 1
	[ -e "$libdir/$TURBO" ] || return 1
	local out
	out=$("${emu[@]}" "$dest/$loader" --library-path "$libdir" --list "$libdir/$SONAME" 2>&1) || { echo "$out" >&2; return 1; }
	if grep -q 'not found' <<<"$out"; then echo "$out" >&2; return 1; fi
	# Every library must come from the closure, never from the host.
	if grep -E '=> /' <<<"$out" | grep -vq -- "=> $dest/"; then
		echo "$out" >&2
		return 1
	fi
	return 0
}

if [ "${FORCE:-0}" != 1 ] && [ -s "$dest/MANIFEST" ] && smoke 2>/dev/null; then
	exit 0
fi

# DEST's usr/, lib/, lib64/ and etc/ are replaced below: refuse a directory that holds
# anything but an earlier closure (e.g. / or a home directory given by mistake).
if [ -n "$(ls -A "$dest")" ] && [ ! -e "$dest/MANIFEST" ] && [ ! -d "$dest/.apt" ] && [ ! -d "$dest/.stage" ]; then
	die "$dest is not empty and holds no earlier runtime (no MANIFEST): give an empty or new directory"
fi

command -v apt-get >/dev/null || die "apt-get is required (Debian or a derivative)"
command -v dpkg >/dev/null || die "dpkg is required"
[ -r "$KEYRING" ] || die "Debian archive keyring $KEYRING not found (install debian-archive-keyring)"

work=$dest/.apt
rm -rf "$work"
mkdir -p "$work"/{etc/sources.list.d,etc/preferences.d,etc/apt.conf.d,state/lists/partial,cache/archives/partial,debs}
touch "$work/state/status"
echo "deb [signed-by=$KEYRING] $MIRROR sid main" >"$work/etc/sources.list"
apt_opts=(
	-o "Dir::Etc::SourceList=$work/etc/sources.list"
	-o "Dir::Etc::SourceParts=$work/etc/sources.list.d"
	-o "Dir::Etc::PreferencesParts=$work/etc/preferences.d"
	-o "Dir::Etc::Preferences=$work/etc/preferences"
	-o "Dir::State=$work/state"
	-o "Dir::State::status=$work/state/status"
	-o "Dir::Cache=$work/cache"
	-o "APT::Architecture=$arch"
	-o "APT::Architectures=$arch"
	-o "APT::Install-Recommends=false"
	-o "Acquire::Languages=none"
	-o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
	-o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
	-o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
	-o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
	-o "Debug::NoLocking=true"
	-o "APT::Sandbox::User=$(id -un)"
)

echo "fetch-tflite-runtime: reading Debian sid package lists" >&2
apt-get "${apt_opts[@]}" -qq update || die "cannot update the private sid package lists from $MIRROR"

if ! apt-cache "${apt_opts[@]}" show "$PKG" >/dev/null 2>&1; then
	die "$PKG is no longer in Debian sid ($MIRROR): the runtime closure cannot be fetched.
Point inferq at another TensorFlow Lite C library instead (tflite.library in the config,
e.g. a libtensorflowlite_c.so built from TensorFlow's tensorflow/lite/c), or update PKG in $0."
fi

# Resolve the closure the way apt would install it onto an empty system.
mapfile -t closure < <(apt-get "${apt_opts[@]}" -s install "$PKG" "${EXTRA[@]}" 2>/dev/null |
	sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1=\2/p')
[ ${#closure[@]} -gt 0 ] || die "apt could not resolve the dependency closure of $PKG in sid"

echo "fetch-tflite-runtime: downloading ${#closure[@]} packages: ${closure[*]}" >&2
(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download "${closure[@]}") ||
	die "cannot download ${closure[*]}"

# Unpack into a fresh tree next to DEST's contents, then swap it in.
stage=$dest/.stage
rm -rf "$stage"
mkdir -p "$stage"
for deb in "$work"/debs/*.deb; do
	dpkg -x "$deb" "$stage"
done
echo "fetch-tflite-runtime: downloaded $(du -ch "$work"/debs/*.deb | tail -1 | cut -f1) of .debs" >&2
{
	echo "# TensorFlow Lite runtime closure ($arch) from Debian sid, fetched $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# loader: $loader  libraries: usr/lib/$triplet  library: usr/lib/$triplet/$SONAME"
	for deb in "$work"/debs/*.deb; do
		printf '%s %s\n' "$(dpkg-deb --showformat='${Package} ${Version} ${Architecture}' -W "$deb")" \
			"$(sha256sum "$deb" | cut -d' ' -f1)"
	done
} >"$stage/MANIFEST.new"
# Merged /usr, as on a Debian system: /lib/ld-linux-aarch64.so.1, the interpreter named in
# arm64 programs, then resolves inside DEST when DEST is an emulator's sysroot (-L).
for top in lib lib64; do
	[ -e "$stage/$top" ] || [ ! -d "$stage/usr/$top" ] || ln -s "usr/$top" "$stage/$top"
done
for top in usr lib lib64 etc; do
	rm -rf "${dest:?}/$top"
	[ -e "$stage/$top" ] || [ -L "$stage/$top" ] || continue
	mv "$stage/$top" "$dest/$top"
done
mv "$stage/MANIFEST.new" "$dest/MANIFEST"
rm -rf "$stage" "$work"

if ! smoke; then
	die "smoke run failed: sid's loader cannot resolve $SONAME's dependencies in $dest (see above)"
fi
echo "fetch-tflite-runtime: TensorFlow Lite runtime ($arch) ready in $dest ($(du -sh "$dest" | cut -f1))" >&2
