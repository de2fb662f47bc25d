# kdedge front door. `make demo` runs the main job end to end; `make test` runs every test.
# Both run `make setup` first, which installs what is missing and does nothing on a second run.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ROOT := $(CURDIR)

# Paths that exist once setup has run (evaluated lazily, in the sub-make after setup).
export LIBTORCH = $(firstword $(wildcard $(ROOT)/.venv-torch/lib/python3*/site-packages/torch))
export KDEDGE_PYTHON := $(ROOT)/.venv/bin/python
export ORT_DYLIB_PATH := $(ROOT)/.cache/onnxruntime/x86_64/libonnxruntime.so
export CARGO_TERM_COLOR ?= never

.PHONY: setup demo test bench demo-run test-run bench-run bench-report fmt lint header capi c-examples arm-test arm-figures
setup:
	@bash scripts/setup.sh

demo: setup
	@$(MAKE) --no-print-directory demo-run

test: setup
	@$(MAKE) --no-print-directory test-run

# Latency of the same int8 models on kdruntime, TFLite (XNNPACK, BUILTIN_REF), TFLite Micro and
# ONNX Runtime, in one run on this machine; rewrites docs/benchmarks/latency.json, the plot and
# BENCHMARKS.md's generated blocks. BENCH_MODELS=a.tflite,b.tflite replaces the demo model with
# these files (e.g. the exported model_qat_int8.tflite; a .onnx beside it is timed on ONNX Runtime).
bench: setup
	@$(MAKE) --no-print-directory bench-run

# Default: the distilled, quantised student of the last `make demo` when there is one.
BENCH_MODELS ?= $(wildcard out/demo/train/quantize/export/model_qat_int8.tflite)
comma := ,
bench-run:
	cargo build --release -p kdtests --bin bench
	./target/release/bench run --out docs/benchmarks $(foreach m,$(subst $(comma), ,$(BENCH_MODELS)),--model $(m))
	./target/release/bench report

# Regenerates BENCHMARKS.md's generated blocks and the plot from the committed JSON files
# (docs/benchmarks/latency.json, and accuracy.json once the accuracy study has written it).
bench-report:
	cargo build --release -p kdtests --bin bench
	./target/release/bench report

demo-run:
	cargo build --release --workspace --all-targets
	bash scripts/demo.sh

# Incremental caches are useless on a one-shot CI build and took 3 GB of disk there.
test-run: export CARGO_INCREMENTAL ?= 0
test-run:
	@df -h . | tail -n 1 | awk '{print "disk free before the tests: " $$4 " of " $$2}'
	cargo fmt --all --check
	cargo test --workspace --all-targets
	cargo build -p kdruntime --no-default-features
	$(MAKE) --no-print-directory arm-test

# ARM under QEMU (scripts/arm-test.sh): aarch64 Linux builds byte-identical to x86_64 plus the
# runtime's unit tests, the CMake example, and the Cortex-M4F firmware (firmware/).
arm-test:
	bash scripts/arm-test.sh

# Regenerates BENCHMARKS.md's ARM section (firmware flash/RAM and instruction counts).
arm-figures:
	bash scripts/arm-figures.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Regenerates include/kdruntime.h from runtime/capi/src/lib.rs (cbindgen, through the header test).
header:
	KDRUNTIME_BLESS_HEADER=1 cargo test -p kdruntime-capi --test header header_is_current

# The C library, header and pkg-config file under target/capi/{lib,include,lib/pkgconfig}.
capi:
	bash scripts/capi.sh $(ROOT)/target/capi release

# The C examples, linked against target/capi (static and through pkg-config).
c-examples: capi
	$(MAKE) -C c-examples KDRUNTIME_PREFIX=$(ROOT)/target/capi
