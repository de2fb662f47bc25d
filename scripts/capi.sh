#!/usr/bin/env bash
# Builds the kdruntime C library and installs it, with its header and pkg-config file, under a
# prefix:  scripts/capi.sh [PREFIX] [PROFILE]   (defaults: target/capi, release)
#   PREFIX/lib/libkdruntime.a, PREFIX/lib/libkdruntime.so, PREFIX/include/kdruntime.h,
#   PREFIX/lib/pkgconfig/kdruntime.pc
# Cross builds: set CARGO_BUILD_TARGET (and whatever that target needs, e.g. its linker and
# -Zbuild-std; scripts/arm-test.sh does so for aarch64-unknown-linux-gnu).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${1:-$root/target/capi}"
profile="${2:-release}"
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
cd "$root"
cargo build -p kdruntime-capi --profile "$profile" -j "${CARGO_BUILD_JOBS:-2}"
dir="$profile"; [ "$profile" = dev ] && dir=debug
target="${CARGO_TARGET_DIR:-$root/target}"
[ -n "${CARGO_BUILD_TARGET:-}" ] && target="$target/$CARGO_BUILD_TARGET"
mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
install -m 644 "$target/$dir/libkdruntime.a" "$prefix/lib/"
install -m 755 "$target/$dir/libkdruntime.so" "$prefix/lib/"
install -m 644 include/kdruntime.h "$prefix/include/"
# The system libraries a Rust staticlib needs: kdruntime has no native dependencies of its own,
# so they are exactly what rustc prints for an empty staticlib built with the same toolchain
# (for the host: std links the same system libraries on every *-linux-gnu target).
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
: > "$tmp/empty.rs"
native="$(${RUSTC:-rustc} --crate-type staticlib --print native-static-libs -o "$tmp/libempty.a" "$tmp/empty.rs" 2>&1 \
    | sed -n 's/.*native-static-libs: //p')"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
cat > "$prefix/lib/pkgconfig/kdruntime.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: kdruntime
Description: int8 TFLite inference bit-exact with TFLite's reference kernels, no heap
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lkdruntime
Libs.private: $native
PC
echo "installed kdruntime C library into $prefix (Libs.private: $native)"
