# inferq — build, test, benchmark, demo.
#   make demo   set up (TFLite runtime, a real detector and photos) and run the daemon on configs/demo.yaml
#   make test   set up (Mosquitto, TFLite runtime) and run vet + all tests with -race
#   make unit   the fast tests only: no apt, no root, no downloads (what needs them skips)
#   make deb [ARCH=arm64]   the Debian package, for this machine or cross-built
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
CACHE := $(CURDIR)/.cache
TFLITE_DIR ?= $(CACHE)/tflite
export INFERQ_TFLITE_RUNTIME := $(TFLITE_DIR)
# sid's arm64 closure: the arm64 smoke test runs inferq under qemu-aarch64-static with it.
TFLITE_ARM64_DIR ?= $(CACHE)/tflite-arm64
export INFERQ_TFLITE_RUNTIME_ARM64 := $(TFLITE_ARM64_DIR)
# Google's TFLite 2.9.0 C library with XNNPACK (npm tfjs-tflite-node), amd64 and arm64.
TFLITE_NPM_DIR ?= $(CACHE)/tflite-npm
export INFERQ_TFLITE_NPM := $(TFLITE_NPM_DIR)
# Debian architecture for make deb (default: this machine's, or GOARCH's).
ARCH ?=
# TensorFlow C headers for compile-checking the SavedModel backend (see README).
TF_HEADERS = $(shell $(GO) env GOMODCACHE)/github.com/tensorflow/tensorflow@v2.15.0+incompatible

.PHONY: unit all build test test-deps tflite-runtime tflite-runtime-arm64 tflite-npm vet cross-check fmt-check tidy-check bench demo deb clean fuzz

all: build

# The version stamped into the binary: the git tag or commit (dirty when changed).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/inferq ./cmd/inferq

# Everything the tests need, installed idempotently: Debian's Mosquitto, lintian,
# qemu-user-static, mmdebstrap and systemd-nspawn (apt), the TFLite 2.14.1 runtime closures
# from sid for this machine and for arm64 (unpacked under .cache, the system untouched),
# Google's TFLite 2.9.0 C library from npm (tfjs-tflite-node, sha256-checked, .cache too),
# and the Debian 12 root the live systemd test boots (.cache/test-root, built once).
test-deps:
	./packaging/install-test-deps.sh
	./packaging/fetch-tflite-runtime.sh $(TFLITE_DIR)
	./packaging/fetch-tflite-runtime.sh $(TFLITE_ARM64_DIR) arm64
	./packaging/fetch-tflite-npm.sh $(TFLITE_NPM_DIR)
	./packaging/make-test-root.sh >/dev/null

tflite-runtime:
	./packaging/fetch-tflite-runtime.sh $(TFLITE_DIR)

tflite-runtime-arm64:
	./packaging/fetch-tflite-runtime.sh $(TFLITE_ARM64_DIR) arm64

tflite-npm:
	./packaging/fetch-tflite-npm.sh $(TFLITE_NPM_DIR)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

tidy-check:
	$(GO) mod tidy -diff

vet:
	$(GO) vet ./...
	$(GO) mod download github.com/tensorflow/tensorflow@v2.15.0+incompatible
	CGO_CFLAGS="-I$(TF_HEADERS) -I$(TF_HEADERS)/third_party/xla/third_party/tsl" \
		$(GO) vet -tags tensorflow ./infer/tensorflow/...

# Most edge boxes are arm64: every package (tests included) must type-check for it, and
# inferq must cross-build without cgo. (packaging's tests run the arm64 build under qemu.)
cross-check:
	GOARCH=arm64 CGO_ENABLED=0 $(GO) vet ./...
	GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/inferq

# INFERQ_REQUIRE_EXTERNAL=1 turns every "Mosquitto/TFLite missing" skip into a failure,
# and any test that skips anyway fails the run: make test never passes by skipping.
test: test-deps fmt-check tidy-check vet cross-check
	@mkdir -p $(CACHE)
	INFERQ_REQUIRE_EXTERNAL=1 $(GO) test -race -count=1 -timeout 30m -v ./... > $(CACHE)/test.log 2>&1 \
		|| { grep -E '^(--- FAIL|FAIL|panic:|ok )|_test.go:[0-9]+:' $(CACHE)/test.log | head -200; \
		     echo "tests failed; full log in $(CACHE)/test.log"; exit 1; }
	@# Native code (TFLite through purego) once more without -race: memory layout differs,
	@# and a crash that -race happens to hide must not pass.
	INFERQ_REQUIRE_EXTERNAL=1 $(GO) test -count=1 ./infer/... ./daemon/...
	@grep -E '^(ok|FAIL|\?) ' $(CACHE)/test.log
	@p=$$(grep -cE '^\s*--- PASS' $(CACHE)/test.log || true); \
	 f=$$(grep -cE '^\s*--- FAIL' $(CACHE)/test.log || true); \
	 s=$$(grep -cE '^\s*--- SKIP' $(CACHE)/test.log || true); \
	 if [ "$$s" != 0 ]; then grep -E -A2 '^\s*--- SKIP' $(CACHE)/test.log; echo "skipped tests are failures here"; fi; \
	 echo "tests: $$p passed, $$f failed, $$s skipped"; \
	 [ "$$f" = 0 ] && [ "$$s" = 0 ]

# Fast feedback while editing: -short, and the tests that need Mosquitto, the TFLite
# runtime, root or a download skip (make test is what proves them).
unit:
	INFERQ_REQUIRE_EXTERNAL=0 INFERQ_TFLITE_RUNTIME= INFERQ_TFLITE_RUNTIME_ARM64= INFERQ_TFLITE_NPM= $(GO) test -short -count=1 ./...

fuzz:
	./packaging/fuzz-all.sh 20s

bench: build test-deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./... | tee $(CACHE)/bench.txt

demo: build tflite-runtime
	./packaging/fetch-demo-model.sh .cache/demo/model
	@mkdir -p .cache/demo/spool/door
	@echo "inferq demo: an SSD MobileNet v2 COCO detector. Drop photos into .cache/demo/spool/"
	@echo "  (or .cache/demo/spool/door/, priority 5), e.g. cp .cache/demo/model/photos/dogs.jpg .cache/demo/spool/"
	@echo "  and watch: mosquitto_sub -p 18830 -t 'inferq/#' -v  or  ./bin/inferq watch --config configs/demo.yaml"
	./bin/inferq run --config configs/demo.yaml

# A PIE, bind-now build with the version stamped in, packaged with dpkg-deb into dist/;
# ARCH=arm64 cross-builds it (cgo-free).
deb:
	./packaging/build-deb.sh -g ./cmd/inferq $(if $(ARCH),-a $(ARCH))

clean:
	rm -rf bin dist
