# Shared by scripts/arm-test.sh and scripts/classify-exported.sh (sourced, not run): messages,
# the ARM tool check, Debian's rustc for the cross targets, the host tools, and one firmware
# build-and-run under qemu-system-arm. The caller sets ROOT (the repository) and TAG (its name
# in messages) before sourcing.

ARM="$ROOT/target/arm"          # Debian's rustc builds here, apart from rustup's target/
HOST="$ROOT/target/debug"       # the host (x86_64) side: rustup's toolchain, debug profile
JOBS="${CARGO_BUILD_JOBS:-2}"

say() { printf '== %s: %s\n' "$TAG" "$*"; }
fail() { echo "$TAG: FAILED: $*" >&2; exit 1; }

# Fails unless every named tool is on PATH (scripts/setup.sh arm installs them), and the Rust
# source that -Zbuild-std needs is present.
arm_require() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || fail "$tool not found: run scripts/setup.sh arm"
    done
    [ -d /usr/lib/rustlib/src/rust/library ] || fail "rust-src missing: run scripts/setup.sh arm"
}

# Debian's rustc 1.96 (rustup's toolchain has no std for these targets and cannot build one):
# -Zbuild-std rebuilds the standard library from rust-web-src for the target.
arm_cargo() {
    PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$ARM" \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
        "$@"
}

# The host's debug kdrun and C library, plus the given kdtests binaries (demo-model, to-ppm).
host_tools() {
    local bins=() b
    for b in "$@"; do bins+=(--bin "$b"); done
    cargo build -q -j "$JOBS" -p kdrun -p kdruntime-capi
    [ ${#bins[@]} -eq 0 ] || cargo build -q -j "$JOBS" -p kdtests "${bins[@]}"
}

# firmware_run LOG MAKE_VARS...: builds firmware/ with MAKE_VARS (MODEL, PHOTO, PHOTO_NAME,
# MODEL_DATA_DIR, BUILD; KDRUN is the host's) and runs it under qemu-system-arm, its console in
# LOG. Fails unless it exits 0 (0 equal to kdrun's host output, 1 differs, 2 API error,
# 3 fault) and prints its PASS line.
firmware_run() {
    local log="$1"; shift
    make -s -C "$ROOT/firmware" KDRUN="$HOST/kdrun" "$@" >/dev/null
    if ! make -s -C "$ROOT/firmware" run KDRUN="$HOST/kdrun" "$@" > "$log" 2>&1; then
        cat "$log"; fail "firmware (exit status above; log in $log)"
    fi
    grep -q '^PASS' "$log" || { cat "$log"; fail "firmware printed no PASS line (log in $log)"; }
}
