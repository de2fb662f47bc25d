#!/usr/bin/env bash
# The ARM part of `make test` (after the x86_64 workspace tests): with no board at hand,
#  1. aarch64-unknown-linux-gnu: libkdruntime.{a,so}, kdrun and the C examples cross-built and run
#     under qemu-aarch64; every output must be byte-identical to the x86_64 build's on the same
#     models and photos; kdruntime's own unit tests run under QEMU too;
#  2. the C examples' CMake project builds natively and cross (toolchain file) and runs;
#  3. the Cortex-M4F firmware (firmware/) is built and run under qemu-system-arm (mps2-an386);
#     it exits non-zero unless its output equals kdrun's on the host.
# Needs `scripts/setup.sh arm` and the host's debug kdrun, demo-model and C library (built here
# if missing). Usage: scripts/arm-test.sh [aarch64|cmake|firmware ...]   (default: all)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG=arm-test
# shellcheck source=scripts/arm-lib.sh
source "$ROOT/scripts/arm-lib.sh"
cd "$ROOT"
WORK="$ARM/test"
A64=aarch64-unknown-linux-gnu
mkdir -p "$WORK"
arm_require /usr/bin/cargo /usr/bin/rustc aarch64-linux-gnu-gcc qemu-aarch64 arm-none-eabi-gcc qemu-system-arm cmake
QEMU_A64=(qemu-aarch64 -L /usr/aarch64-linux-gnu)

# The host tools and the demo model and photo every step compares on.
demo_tools() {
    host_tools demo-model
    [ -d "$WORK/demo" ] && [ "$WORK/demo/model.tflite" -nt "$HOST/demo-model" ] \
        || "$HOST/demo-model" "$WORK/demo" >/dev/null
}

step_aarch64() {
    local t0=$SECONDS
    demo_tools
    say "aarch64: cross-building kdrun and libkdruntime.{a,so} (profile arm-test, -Zbuild-std)"
    arm_cargo cargo build -q -j "$JOBS" --profile arm-test -Zbuild-std --target $A64 -p kdrun -p kdruntime-capi
    local kdrun64="$ARM/$A64/arm-test/kdrun"
    file -b "$kdrun64" | grep -q 'ARM aarch64' || fail "$kdrun64 is not an aarch64 binary"

    # Twice: on a CPU with the dot-product extension (the NEON kernels use sdot) and on one
    # without (smull + sadalp); the tests check that the detection agrees with the CPU.
    local cpu
    for cpu in max:1 cortex-a72:0; do
        say "aarch64: kdruntime unit tests under qemu-aarch64 -cpu ${cpu%:*} (dotprod: ${cpu#*:})"
        QEMU_CPU=${cpu%:*} KDRUNTIME_EXPECT_DOTPROD=${cpu#*:} arm_cargo cargo test -q -j "$JOBS" --profile arm-test \
            -Zbuild-std --target $A64 -p kdruntime --lib 2>&1 | tail -3
    done

    say "aarch64: C library install and C examples (static and shared)"
    arm_cargo env CARGO_BUILD_TARGET=$A64 CARGO_UNSTABLE_BUILD_STD=std RUSTC=/usr/bin/rustc \
        bash scripts/capi.sh "$WORK/capi-aarch64" arm-test >/dev/null
    bash scripts/capi.sh "$WORK/capi-x86_64" dev >/dev/null
    mkdir -p "$WORK/c-aarch64" "$WORK/c-x86_64"
    make -s -C c-examples KDRUNTIME_PREFIX="$WORK/capi-aarch64" CC=aarch64-linux-gnu-gcc OUT="$WORK/c-aarch64"
    make -s -C c-examples KDRUNTIME_PREFIX="$WORK/capi-x86_64" OUT="$WORK/c-x86_64"
    file -b "$WORK/c-aarch64/classify-shared" | grep -q 'ARM aarch64' || fail "classify-shared is not aarch64"

    say "aarch64 vs x86_64: the same models and photos, byte for byte"
    local models=("$WORK/demo/model.tflite")
    # TensorFlow's own converter output (setup's tfmodels step), small enough for the emulator.
    for m in mobilenetv2_035_96 poolconcat_64 mobilenetv3small_224; do
        [ -f ".cache/tfmodels/$m.tflite" ] && models+=(".cache/tfmodels/$m.tflite")
    done
    local photos=(data/raw/photos/chelsea.png data/raw/photos/coffee.png data/raw/photos/china.jpg
        data/raw/photos/rocket.jpg "$WORK/demo/photo.ppm")
    local n=0 out="$WORK/cmp"
    rm -rf "$out"; mkdir -p "$out"
    for m in "${models[@]}"; do
        local tag; tag=$(basename "$m" .tflite)
        [ "$tag" = model ] && tag=demo
        for p in "${photos[@]}"; do
            local pt; pt=$(basename "$p")
            for arch in x86_64 aarch64; do
                local run=("$HOST/kdrun"); [ $arch = aarch64 ] && run=("${QEMU_A64[@]}" "$kdrun64")
                # The JSON holds the raw output, probabilities and letterbox geometry; the image
                # path is the same on both sides.
                "${run[@]}" run "$m" "$p" --json --top-k 10 > "$out/$tag.$pt.$arch.json"
            done
            cmp "$out/$tag.$pt.x86_64.json" "$out/$tag.$pt.aarch64.json" \
                || fail "kdrun run $m $p: aarch64 output differs from x86_64 (see $out)"
            n=$((n + 1))
        done
        # Raw inputs through `kdrun raw` (no decoding, no letterbox): the kernels alone, fed with
        # the bytes of a PNG file (compressed data: varied, and the same on every run).
        local in="$out/$tag.input.u8" dims
        dims=$("$HOST/kdrun" info "$m" | sed -n 's/^input 0:.*\[\([0-9, ]*\)\].*/\1/p')
        head -c $(( ${dims//,/*} )) data/raw/photos/astronaut.png > "$in"
        "$HOST/kdrun" raw "$m" "$in" "$out/$tag.raw.x86_64"
        # Both NEON paths: sdot (-cpu max) and base NEON (-cpu cortex-a72).
        for cpu in max cortex-a72; do
            "${QEMU_A64[@]}" -cpu $cpu "$kdrun64" raw "$m" "$in" "$out/$tag.raw.aarch64-$cpu"
            cmp "$out/$tag.raw.x86_64" "$out/$tag.raw.aarch64-$cpu" \
                || fail "kdrun raw $m (-cpu $cpu): aarch64 differs from x86_64"
            n=$((n + 1))
        done
    done
    # The C examples on the PPM photo (they read PPM/PGM): static and shared, against x86_64.
    for m in "${models[@]}"; do
        local tag; tag=$(basename "$m" .tflite)
        "$WORK/c-x86_64/classify" "$m" "$WORK/demo/photo.ppm" > "$out/$tag.c.x86_64"
        for prog in classify classify-shared; do
            "${QEMU_A64[@]}" "$WORK/c-aarch64/$prog" "$m" "$WORK/demo/photo.ppm" > "$out/$tag.$prog.aarch64"
            cmp "$out/$tag.c.x86_64" "$out/$tag.$prog.aarch64" \
                || fail "C example $prog on $m: aarch64 output differs from x86_64"
            n=$((n + 1))
        done
    done
    say "aarch64: $n comparisons over ${#models[@]} models, all byte-identical ($((SECONDS - t0)) s)"
}

step_cmake() {
    local t0=$SECONDS
    [ -f "$WORK/capi-x86_64/lib/libkdruntime.a" ] || step_aarch64
    say "cmake: the C examples' CMake project, native and cross (aarch64 toolchain file)"
    rm -rf "$WORK/cmake-x86_64" "$WORK/cmake-aarch64"
    cmake -S c-examples -B "$WORK/cmake-x86_64" -DCMAKE_PREFIX_PATH="$WORK/capi-x86_64" >/dev/null
    cmake --build "$WORK/cmake-x86_64" -j "$JOBS" >/dev/null
    cmake -S c-examples -B "$WORK/cmake-aarch64" -DCMAKE_PREFIX_PATH="$WORK/capi-aarch64" \
        -DCMAKE_TOOLCHAIN_FILE="$ROOT/c-examples/cmake/aarch64-linux-gnu.cmake" >/dev/null
    cmake --build "$WORK/cmake-aarch64" -j "$JOBS" >/dev/null
    local m="$WORK/demo/model.tflite" p="$WORK/demo/photo.ppm"
    "$WORK/cmake-x86_64/classify" "$m" "$p" > "$WORK/cmake.x86_64"
    "${QEMU_A64[@]}" "$WORK/cmake-aarch64/classify" "$m" "$p" > "$WORK/cmake.aarch64"
    "$WORK/c-x86_64/classify" "$m" "$p" | cmp - "$WORK/cmake.x86_64" || fail "CMake-built classify differs"
    cmp "$WORK/cmake.x86_64" "$WORK/cmake.aarch64" || fail "CMake-built aarch64 classify differs from x86_64"
    say "cmake: both builds run and agree ($((SECONDS - t0)) s)"
}

step_firmware() {
    local t0=$SECONDS
    demo_tools
    say "firmware: Cortex-M4F image (demo model, real photo) under qemu-system-arm mps2-an386"
    local fw="$ARM/firmware"
    mkdir -p "$fw/demo"
    cp -p "$WORK/demo/model.tflite" "$WORK/demo/photo.ppm" "$fw/demo/"
    # The log is kept for the figures (scripts/arm-figures.sh).
    firmware_run "$fw/run.log" PHOTO_NAME=chelsea.png
    cat "$fw/run.log"
    if arm-none-eabi-nm -C "$fw/firmware.elf" | grep -E 'core::fmt|panic_fmt|malloc'; then
        fail "the firmware links formatting or allocation code (symbols above)"
    fi
    say "firmware: PASS, no core::fmt / panic_fmt / malloc symbols ($((SECONDS - t0)) s)"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(aarch64 cmake firmware)
for s in "${steps[@]}"; do
    case "$s" in
        aarch64|cmake|firmware) "step_$s" ;;
        *) fail "unknown step '$s' (known: aarch64 cmake firmware)" ;;
    esac
done
say "ok (${steps[*]}) in $SECONDS s"
