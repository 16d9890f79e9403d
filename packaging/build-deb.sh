#!/usr/bin/env bash
# Builds the inferq Debian package with dpkg-deb: dist/inferq_<version>_<arch>.deb.
#
#   packaging/build-deb.sh [-b BINARY | -g TARGET] [-c CONFIG] [-o OUTDIR] [-v VERSION] [-a ARCH]
#
#   -b  the inferq binary (default bin/inferq; built from ./cmd/inferq if missing)
#   -g  build the binary from this `go build` target instead (e.g. ./cmd/inferq)
#   -c  the configuration installed as /etc/inferq/inferq.yaml (default configs/inferq.yaml)
#   -o  output directory (default dist)
#   -v  Debian version (default: from `git describe --tags`, see below)
#   -a  Debian architecture (default: from GOARCH, as `go env GOARCH` reports it); a
#       binary built here (-g, or bin/inferq missing) is cross-built for it, cgo-free
#   DEB_MAINTAINER in the environment sets the Maintainer field; DEB_COMPRESS the
#   dpkg-deb compressor (default xz; zstd builds about 20 times faster, 30% larger).
#
# Prints the path of the package. Needs dpkg-deb, gzip and, for -b default, go. No root
# needed: every file in the package is owned by root:root (--root-owner-group); the
# maintainer scripts give the state and spool directories to the inferq user.
# The build is reproducible for a given binary, config and commit (SOURCE_DATE_EPOCH
# defaults to the commit time).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
binary="$repo/bin/inferq"
target=""
config="$repo/configs/inferq.yaml"
outdir="$repo/dist"
version=""
arch=""

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while getopts "b:g:c:o:v:a:h" opt; do
	case "$opt" in
	b) binary=$OPTARG ;;
	g) target=$OPTARG ;;
	c) config=$OPTARG ;;
	o) outdir=$OPTARG ;;
	v) version=$OPTARG ;;
	a) arch=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage

die() { echo "build-deb: $*" >&2; exit 1; }
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (Debian package dpkg)"

# Version from `git describe --tags`: v1.2.3 -> 1.2.3; v1.2.3-4-gabc1234 ->
# 1.2.3+4.gabc1234. Without a tag, 0.1.0~git<commit count>.g<id>, which sorts below
# the first release; outside git, 0.1.0.
git_in_repo() { git -C "$repo" "$@" 2>/dev/null; }
if [ -z "$version" ]; then
	if desc=$(git_in_repo describe --tags); then
		[[ $desc =~ ^v?([0-9][0-9A-Za-z.+~]*)(-([0-9]+)-(g[0-9a-f]+))?$ ]] ||
			die "tag-based version \"$desc\" is not usable; pass -v"
		version=${BASH_REMATCH[1]}
		[ -z "${BASH_REMATCH[3]}" ] || version+="+${BASH_REMATCH[3]}.${BASH_REMATCH[4]}"
	elif id=$(git_in_repo rev-parse --short HEAD); then
		version="0.1.0~git$(git_in_repo rev-list --count HEAD).g$id"
	else
		version=0.1.0
	fi
fi
[[ $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "invalid version \"$version\" (-v)"

if [ -z "$arch" ]; then
	goarch=${GOARCH:-$(go env GOARCH 2>/dev/null || true)}
	case "$goarch" in
	amd64 | arm64 | riscv64 | s390x) arch=$goarch ;;
	386) arch=i386 ;;
	ppc64le) arch=ppc64el ;;
	arm) arch=armhf ;;
	"") arch=$(dpkg --print-architecture) ;;
	*) die "no Debian architecture for GOARCH=$goarch; pass -a" ;;
	esac
fi
# The Go architecture, the ELF machine number (e_machine) and the GNU triplet for $arch.
case "$arch" in
amd64) goarch=amd64 machine=62 gnu=x86_64-linux-gnu ;;
arm64) goarch=arm64 machine=183 gnu=aarch64-linux-gnu ;;
i386) goarch=386 machine=3 gnu=i686-linux-gnu ;;
armhf) goarch=arm machine=40 gnu=arm-linux-gnueabihf ;;
riscv64) goarch=riscv64 machine=243 gnu=riscv64-linux-gnu ;;
ppc64el) goarch=ppc64le machine=21 gnu=powerpc64le-linux-gnu ;;
s390x) goarch=s390x machine=22 gnu=s390x-linux-gnu ;;
*) goarch="" machine="" gnu="" ;;
esac

# Debian's hardening checks expect a position-independent executable bound at load
# time (lintian: hardening-no-pie, hardening-no-bindnow); -bindnow needs Go 1.22.
# main.version is what `inferq version` prints. -s -w leave out the symbol table and
# DWARF, as strip would: the host's strip does not know a foreign architecture's ELF.
# A foreign architecture is built without cgo (inferq needs none: purego loads libraries).
gobuild() {
	[ -n "$goarch" ] || die "cannot build for Debian architecture $arch; build it and pass -b"
	local env=(GOARCH="$goarch")
	[ "$goarch" != arm ] || env+=(GOARM="${GOARM:-7}")
	[ "$goarch" = "$(go env GOHOSTARCH)" ] || env+=(CGO_ENABLED=0)
	(cd "$repo" && env "${env[@]}" go build -trimpath -buildmode=pie \
		-ldflags="-s -w -bindnow -X main.version=$version" -o "$1" "$2")
}
umask 022
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"

if [ -n "$target" ]; then
	binary="$stage/inferq"
	gobuild "$binary" "$target" || die "cannot build $target (-g)"
elif [ ! -e "$binary" ]; then
	[ "$binary" = "$repo/bin/inferq" ] || die "binary $binary not found (-b)"
	echo "build-deb: building $binary" >&2
	gobuild "$binary" ./cmd/inferq
fi
[ -f "$binary" ] && [ -x "$binary" ] || die "binary $binary is not an executable file (-b)"
[ -f "$config" ] || die "configuration $config not found (-c)"

is_elf() { [ "$(head -c4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }
# elf_machine FILE: e_machine, in the byte order the file says (EI_DATA).
elf_machine() {
	local b
	read -r -a b <<<"$(od -An -tu1 -j5 -N1 "$1") $(od -An -tu1 -j18 -N2 "$1")"
	if [ "${b[0]}" = 2 ]; then echo $((b[1] * 256 + b[2])); else echo $((b[2] * 256 + b[1])); fi
}
if is_elf "$binary" && [ -n "$machine" ] && [ "$(elf_machine "$binary")" != "$machine" ]; then
	die "binary $binary is not built for $arch (ELF machine $(elf_machine "$binary"), want $machine): set -a or GOARCH"
fi

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git_in_repo log -1 --format=%ct || date +%s)}

# is_static FILE: an ELF file without a program interpreter (PT_INTERP).
is_static() {
	[ "$(head -c4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ] || return 1
	if command -v readelf >/dev/null; then
		! LC_ALL=C readelf -lW "$1" | grep -q 'INTERP'
	else
		! LC_ALL=C grep -aq -e '/ld-linux' -e '/ld-musl' -e '/ld64\.so' "$1"
	fi
}

# fortifiable FILE: whether FILE imports a C function that has a _FORTIFY_SOURCE variant,
# what lintian's hardening-no-fortify-functions looks for: a cgo build does (fprintf and
# vfprintf, from runtime/cgo), a cgo-free one (a cross build) does not. Without readelf: yes.
fortifiable() {
	command -v readelf >/dev/null || return 0
	local list=/usr/share/lintian/data/binaries/hardened-functions names
	if [ -r "$list" ]; then
		names=$(grep -vE '^(#|$)' "$list")
	else
		names=$(printf '%s\n' fprintf vfprintf printf sprintf snprintf vsnprintf vsprintf)
	fi
	LC_ALL=C readelf --dyn-syms -W "$1" | awk '$7 == "UND" { sub(/@.*/, "", $8); print $8 }' |
		grep -qxF -f <(echo "$names")
}

# Files: install MODE SRC DEST (parents 0755).
put() { install -D -m "$1" "$2" "$root$3"; }
put 0755 "$binary" /usr/bin/inferq
# Debian ships binaries without debug symbols; strip (binutils) is optional here. The host's
# strip knows only its own architecture: a foreign binary takes <gnu-triplet>-strip or
# llvm-strip, and without either one built here is left as the Go linker wrote it (-s -w).
if is_elf "$binary"; then
	stripped=""
	for s in strip ${gnu:+"$gnu-strip"} llvm-strip; do
		command -v "$s" >/dev/null || continue
		if "$s" --strip-unneeded --remove-section=.comment --remove-section=.note \
			"$root/usr/bin/inferq" 2>/dev/null; then
			stripped=$s
			break
		fi
	done
	if [ -z "$stripped" ] && command -v readelf >/dev/null &&
		LC_ALL=C readelf -SW "$root/usr/bin/inferq" | grep -qE ' \.(symtab|debug_info) '; then
		die "cannot strip $binary for $arch: install binutils-${gnu//_/-} or llvm"
	fi
fi
put 0644 "$config" /etc/inferq/inferq.yaml
put 0644 "$repo/systemd/inferq.service" /lib/systemd/system/inferq.service
put 0644 "$repo/systemd/sysusers.d/inferq.conf" /usr/lib/sysusers.d/inferq.conf
put 0644 "$repo/systemd/tmpfiles.d/inferq.conf" /usr/lib/tmpfiles.d/inferq.conf
put 0644 "$repo/systemd/inferq-gpu.conf" /usr/share/doc/inferq/examples/inferq-gpu.conf
put 0755 "$here/fetch-tflite-runtime.sh" /usr/lib/inferq/fetch-tflite-runtime
put 0644 "$here/deb/copyright" /usr/share/doc/inferq/copyright
install -d -m 0755 "$root/var/spool/inferq"
install -d -m 0755 "$root/usr/share/man/man1"
gzip -9n <"$here/deb/inferq.1" >"$root/usr/share/man/man1/inferq.1.gz"
chmod 0644 "$root/usr/share/man/man1/inferq.1.gz"
install -d -m 0755 "$root/usr/share/lintian/overrides"
{
	echo "# inferq is systemd-only by design: Type=notify, watchdog, sandboxing."
	echo "inferq: package-supports-alternative-init-but-no-init.d-script [lib/systemd/system/inferq.service]"
	# Go programs without cgo or purego are static; inferq itself is dynamic.
	if is_static "$root/usr/bin/inferq"; then
		echo "inferq: statically-linked-binary [usr/bin/inferq]"
	elif is_elf "$root/usr/bin/inferq" && fortifiable "$root/usr/bin/inferq"; then
		echo "# Go code calls none of the glibc functions _FORTIFY_SOURCE replaces."
		echo "inferq: hardening-no-fortify-functions [usr/bin/inferq]"
	fi
	# A string inside github.com/eclipse/paho.mqtt.golang, not inferq's own.
	if LC_ALL=C grep -aq incomming "$root/usr/bin/inferq"; then
		echo "inferq: spelling-error-in-binary incomming incoming [usr/bin/inferq]"
	fi
} >"$root/usr/share/lintian/overrides/inferq"
chmod 0644 "$root/usr/share/lintian/overrides/inferq"

date_rfc2822=$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")
maintainer=${DEB_MAINTAINER:-"inferq maintainers <maintainers@inferq.invalid>"}
# A version without a Debian revision makes a native package: changelog.gz.
changelog=changelog.gz
case "$version" in *-*) changelog=changelog.Debian.gz ;; esac
{
	printf 'inferq (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Built by packaging/build-deb.sh; the version names the commit.\n\n'
	printf ' -- %s  %s\n' "$maintainer" "$date_rfc2822"
} | gzip -9n >"$root/usr/share/doc/inferq/$changelog"
chmod 0644 "$root/usr/share/doc/inferq/$changelog"

# Control area.
install -d -m 0755 "$root/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "$here/deb/$s" "$root/DEBIAN/$s"; done
printf '/etc/inferq/inferq.yaml\n' >"$root/DEBIAN/conffiles"
# md5sums lists every file but the conffiles, whose sums dpkg keeps itself.
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc/inferq/inferq.yaml -prune -o \
	-type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: inferq
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: libc6, adduser, libturbojpeg0
Recommends: mosquitto
Suggests: libtensorflow-lite2.14.1
Section: misc
Priority: optional
Homepage: https://github.com/inferq/inferq
Description: durable on-device inference queue for edge boxes
 inferq takes images from camera spool directories and MQTT into a durable
 priority queue on local disk, runs TensorFlow Lite inference on one job at a
 time in a supervised child process, and publishes results, health and
 availability over MQTT. Nothing is lost through crashes, reboots or broker
 outages: results wait on disk until the broker acknowledges them.
 .
 The TensorFlow Lite runtime is not included: install it from Debian where
 it is packaged, or fetch Debian's build with its own libraries into a
 directory with /usr/lib/inferq/fetch-tflite-runtime DIR and point runtime.dir
 in /etc/inferq/inferq.yaml at it.
EOF
chmod 0644 "$root/DEBIAN/control"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$outdir"
deb="$outdir/inferq_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
