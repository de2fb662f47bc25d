#!/usr/bin/env bash
# kdedge setup: installs everything the project needs on a fresh Debian 12 / Ubuntu x86_64 machine.
# Idempotent: every step checks for its own result first, so a second run does nothing and takes
# seconds. Downloads are kept in .cache/ (git-ignored) so reruns need no network.
#
# Usage: scripts/setup.sh [step ...]   (steps: apt arm python torch onnxruntime data tfmodels; default: all)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
WHEELS="$CACHE/wheels"
PY="${PYTHON:-python3}"
mkdir -p "$CACHE" "$WHEELS"
# .cache/wheels is the download cache; pip's own would hold a second copy (~1 GB) of every wheel.
export PIP_NO_CACHE_DIR="${PIP_NO_CACHE_DIR:-1}"

TORCH_VERSION=2.11.0
ORT_VERSION=1.32.0
LITERT_VERSION=2.3.0
TF_VERSION=2.21.0

step=""
fail() {
    echo "setup: step '$step' failed: $*" >&2
    exit 1
}
trap 'fail "command on line $LINENO exited with status $?"' ERR
say() { echo "setup[$step]: $*"; }

sudo_cmd() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Download wheels once into .cache/wheels, then install offline from there.
fetch_wheels() {
    local marker="$WHEELS/.fetched-$1"; shift
    if [ ! -f "$marker" ]; then
        say "downloading $*"
        "$PY" -m pip download -q -d "$WHEELS" "$@" \
            || fail "pip could not download $*; check that PyPI is reachable, then rerun make setup"
        touch "$marker"
    fi
}

# Debian packages from a list, installed only when one is missing (a quick dpkg-query otherwise).
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    local log="$CACHE/apt.log"
    sudo_cmd apt-get update -qq >"$log" 2>&1 || { tail -5 "$log"; fail "apt-get update failed; run as root or with sudo"; }
    sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1 \
        || { tail -5 "$log"; fail "apt-get install ${missing[*]} failed; run as root or with sudo"; }
}

step_apt() {
    step=apt
    apt_install build-essential pkg-config unzip libclang-dev clang
}

# ARM tool chain (issue 7): cross gcc for aarch64 Linux and bare-metal Cortex-M, QEMU user and
# system emulators, and Debian's rustc (with its standard library sources) for -Zbuild-std,
# which rustup's toolchain cannot do offline. cmake builds the C examples' CMake project.
step_arm() {
    step=arm
    apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user gcc-arm-none-eabi \
        libnewlib-arm-none-eabi qemu-system-arm rustc-web cargo-web rust-web-src cmake
}

step_python() {
    step=python
    local venv="$ROOT/.venv"
    local marker="$venv/.kdedge-ok"
    local reqs=("ai-edge-litert==$LITERT_VERSION" tflite-micro onnx "onnxruntime==$ORT_VERSION" numpy)
    [ -f "$marker" ] && return 0
    fetch_wheels python "${reqs[@]}"
    [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv" || fail "python3 -m venv failed; install python3-venv"
    say "installing ${reqs[*]} into .venv"
    "$venv/bin/pip" install -q --no-index --find-links "$WHEELS" "${reqs[@]}" \
        || fail "pip install into .venv failed; delete .cache/wheels/.fetched-python and rerun"
    "$venv/bin/python" -c "import ai_edge_litert.interpreter, tflite_micro, onnx, onnxruntime, numpy" \
        || fail "the reference interpreters do not import from .venv"
    touch "$marker"
}

step_torch() {
    step=torch
    local venv="$ROOT/.venv-torch"
    local marker="$venv/.kdedge-ok"
    local reqs=("torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85)
    [ -f "$marker" ] && return 0
    fetch_wheels torch --no-deps "${reqs[@]}"
    [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv" || fail "python3 -m venv failed; install python3-venv"
    say "installing torch $TORCH_VERSION (libtorch for tch) into .venv-torch"
    "$venv/bin/pip" install -q --no-deps --no-index --find-links "$WHEELS" "${reqs[@]}" \
        || fail "pip install of torch failed; delete .cache/wheels/.fetched-torch and rerun"
    [ -f "$(torch_dir)/lib/libtorch_cpu.so" ] || fail "libtorch_cpu.so missing under $(torch_dir)"
    touch "$marker"
}

torch_dir() {
    local d
    for d in "$ROOT"/.venv-torch/lib/python3*/site-packages/torch; do echo "$d"; return 0; done
}

step_onnxruntime() {
    step=onnxruntime
    local dest="$CACHE/onnxruntime/x86_64"
    [ -f "$dest/libonnxruntime.so" ] && return 0
    local dl="$CACHE/onnxruntime/wheel-x86_64"
    mkdir -p "$dl" "$dest"
    if ! ls "$dl"/onnxruntime-*.whl >/dev/null 2>&1; then
        say "downloading the onnxruntime $ORT_VERSION wheel for its shared library"
        "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$dl" "onnxruntime==$ORT_VERSION" \
            || fail "could not download onnxruntime==$ORT_VERSION"
    fi
    unzip -q -o -j "$dl"/onnxruntime-*.whl "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$dest" \
        || fail "libonnxruntime.so.$ORT_VERSION not found in the wheel"
    ln -sf "libonnxruntime.so.$ORT_VERSION" "$dest/libonnxruntime.so"
}

step_data() {
    step=data
    local data="$ROOT/data/raw"
    mkdir -p "$data"
    # Fashion-MNIST: Debian's dataset-fashion-mnist (IDX files).
    if [ ! -f "$data/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
        local debdir="$CACHE/deb"
        mkdir -p "$debdir"
        if ! ls "$debdir"/dataset-fashion-mnist_*.deb >/dev/null 2>&1; then
            say "downloading dataset-fashion-mnist"
            (cd "$debdir" && apt-get download dataset-fashion-mnist 2>/dev/null) \
                || { sudo_cmd apt-get update -qq && (cd "$debdir" && apt-get download dataset-fashion-mnist); } \
                || fail "apt-get download dataset-fashion-mnist failed"
        fi
        local x="$CACHE/deb/x"
        rm -rf "$x"; dpkg-deb -x "$debdir"/dataset-fashion-mnist_*.deb "$x"
        mkdir -p "$data/fashion-mnist"
        find "$x" -name '*-ubyte*' -exec cp {} "$data/fashion-mnist/" \;
        for f in "$data/fashion-mnist"/*-ubyte; do [ -f "$f" ] && gzip -f "$f"; done
        rm -rf "$x"
        [ -f "$data/fashion-mnist/train-images-idx3-ubyte.gz" ] || fail "IDX files not found in dataset-fashion-mnist"
    fi
    # scikit-learn's digits and sample photos; scikit-image's sample photos.
    if [ ! -f "$data/digits/digits.csv.gz" ] || [ ! -f "$data/photos/china.jpg" ] || [ ! -f "$data/photos/astronaut.png" ]; then
        local dl="$CACHE/sample-wheels"
        mkdir -p "$dl" "$data/digits" "$data/photos"
        ls "$dl"/scikit_learn-*.whl >/dev/null 2>&1 || { say "downloading the scikit-learn wheel"; \
            "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$dl" scikit-learn || fail "could not download scikit-learn"; }
        ls "$dl"/scikit_image-*.whl >/dev/null 2>&1 || { say "downloading the scikit-image wheel"; \
            "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$dl" scikit-image || fail "could not download scikit-image"; }
        unzip -q -o -j "$dl"/scikit_learn-*.whl 'sklearn/datasets/data/digits.csv.gz' -d "$data/digits"
        unzip -q -o -j "$dl"/scikit_learn-*.whl 'sklearn/datasets/images/china.jpg' 'sklearn/datasets/images/flower.jpg' -d "$data/photos"
        unzip -q -o -j "$dl"/scikit_image-*.whl 'skimage/data/astronaut.png' 'skimage/data/chelsea.png' \
            'skimage/data/coffee.png' 'skimage/data/rocket.jpg' 'skimage/data/retina.jpg' -d "$data/photos" \
            || fail "sample photos not found in the scikit-image wheel"
    fi
}

# TensorFlow's own converter output for real networks (random seeded weights): kdruntime must run
# what TFLiteConverter emits, not only what our writer emits. TensorFlow lives in its own venv
# (.venv-tf) so its pins never move the reference interpreters' numpy/protobuf in .venv.
step_tfmodels() {
    step=tfmodels
    local venv="$ROOT/.venv-tf"
    local marker="$venv/.kdedge-ok"
    local reqs=("tensorflow-cpu==$TF_VERSION")
    if [ ! -f "$marker" ]; then
        fetch_wheels tf --only-binary=:all: "${reqs[@]}"
        [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv" || fail "python3 -m venv failed; install python3-venv"
        say "installing tensorflow-cpu $TF_VERSION into .venv-tf"
        "$venv/bin/pip" install -q --no-index --find-links "$WHEELS" "${reqs[@]}" \
            || fail "pip install of tensorflow-cpu failed; delete .cache/wheels/.fetched-tf and rerun"
        "$venv/bin/python" -c "import tensorflow" 2>/dev/null || fail "tensorflow does not import from .venv-tf"
        touch "$marker"
    fi
    [ -f "$ROOT/data/raw/photos/china.jpg" ] || fail "photos missing: run the data step first"
    # tf_convert.py skips models whose .tflite already exists, so this is quick on a second run.
    TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" "$ROOT/tools/tf_convert.py" \
        --photos "$ROOT/data/raw/photos" --out "$CACHE/tfmodels" \
        || fail "tools/tf_convert.py failed (see its message above)"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(apt arm python torch onnxruntime data tfmodels)
for s in "${steps[@]}"; do
    case "$s" in
        apt|arm|python|torch|onnxruntime|data|tfmodels) "step_$s" ;;
        *) step="$s"; fail "unknown step (known: apt arm python torch onnxruntime data tfmodels)" ;;
    esac
done
step=done
echo "setup: ok (${steps[*]})"
