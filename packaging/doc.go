// Package packaging builds inferq's Debian package; it holds no Go code of its own.
//
// build-deb.sh turns bin/inferq, configs/inferq.yaml and the files in ../systemd into
// dist/inferq_<version>_<arch>.deb with dpkg-deb, without root and without downloads;
// -a arm64 cross-builds the binary without cgo. The tests here build that package for
// this machine and for arm64 and inspect it with dpkg-deb, systemd-analyze and lintian;
// the arm64 binary runs under qemu-aarch64-static with sid's arm64 TFLite closure
// (fetch-tflite-runtime.sh DIR arm64) and classifies the demo images through its engine
// child (arm64_test.go). fetch-tflite-npm.sh DIR fetches Google's TFLite 2.9.0 C library
// (XNNPACK built in, no cancellation API) for amd64 and arm64 from the npm package
// tfjs-tflite-node@0.0.2, checked against pinned sha256 sums (fetch_npm_test.go).
//
// What the package guarantees:
//
//   - Layout: /usr/bin/inferq, /etc/inferq/inferq.yaml (a conffile: local edits survive
//     upgrades), /lib/systemd/system/inferq.service, /usr/lib/sysusers.d/inferq.conf,
//     /usr/lib/tmpfiles.d/inferq.conf, /usr/share/doc/inferq, the man page, and the
//     spool /var/spool/inferq. Every file is owned by root; the maintainer scripts hand
//     /var/lib/inferq and /var/spool/inferq to the inferq system user.
//   - Installing creates the inferq user (systemd-sysusers, or adduser without it) and
//     the directories, enables the service, and starts it when systemd is running.
//     Upgrading restarts it; the queue loses nothing through a restart.
//   - Removing stops the service and keeps the queue, the spool and the configuration;
//     purging deletes /var/lib/inferq and /var/spool/inferq. The inferq user is kept, as
//     Debian does for system users.
//   - The same inputs and commit give a byte-identical package (SOURCE_DATE_EPOCH is the
//     commit time).
package packaging
