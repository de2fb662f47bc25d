#!/usr/bin/env bash
# Classifies one real image with the files of an export folder (what `kdtrain`'s exporter writes:
# model_qat_int8.tflite, model_data.c/.h, labels.txt, inference_config.json) three ways, prints
# the three results, and fails unless their raw int8 outputs are equal byte for byte:
#  1. kdrun on the host:  kdrun run EXPORT_DIR/model_qat_int8.tflite IMAGE --config EXPORT_DIR/inference_config.json
#  2. the C example c-examples/classify (static libkdruntime.a) on the same image as PPM
#  3. the Cortex-M4F firmware (firmware/) under qemu-system-arm, built with
#     MODEL_DATA_DIR=EXPORT_DIR (the exporter's model_data.c in flash) and the image compiled in
# Before that it checks that model_data.c/.h hold exactly model_qat_int8.tflite (the firmware's
# generator, firmware/tools/gen_data.py, writes the exporter's C array byte for byte).
#
# Usage: scripts/classify-exported.sh EXPORT_DIR IMAGE     (IMAGE: PNG, JPEG, BMP or PPM/PGM)
# Needs `scripts/setup.sh arm` (firmware) and a C compiler; builds the host's debug kdrun, C
# library and C example and the firmware. Work files go to target/classify-exported/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG=classify-exported
# shellcheck source=scripts/arm-lib.sh
source "$ROOT/scripts/arm-lib.sh"
PYTHON="${PYTHON:-python3}"

[ $# -eq 2 ] || { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ -d "$1" ] || fail "export folder $1 does not exist"
[ -f "$2" ] || fail "image $2 does not exist"
EXPORT="$(cd "$1" && pwd)"
IMAGE="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
MODEL="$EXPORT/model_qat_int8.tflite"
for f in model_qat_int8.tflite model_data.c model_data.h labels.txt inference_config.json; do
    [ -f "$EXPORT/$f" ] || fail "$EXPORT/$f is missing (is $1 an export folder of kdtrain?)"
done
# make cannot take paths with whitespace (MODEL_DATA_DIR, MODEL).
case "$EXPORT" in *[[:space:]]*) fail "the export folder's path must not contain whitespace: $EXPORT" ;; esac
arm_require /usr/bin/cargo /usr/bin/rustc arm-none-eabi-gcc qemu-system-arm "$PYTHON"
WORK="$ROOT/target/classify-exported"
rm -rf "$WORK"; mkdir -p "$WORK"
cd "$ROOT"
t0=$SECONDS

say "the C array in $EXPORT holds model_qat_int8.tflite, byte for byte"
"$PYTHON" firmware/tools/gen_data.py model "$MODEL" "$WORK/c-array"
for f in model_data.c model_data.h; do
    cmp -s "$WORK/c-array/$f" "$EXPORT/$f" \
        || fail "$EXPORT/$f is not the C array of model_qat_int8.tflite (regenerated: $WORK/c-array/$f)"
done

say "building the host's kdrun, C library and C example"
host_tools to-ppm
bash scripts/capi.sh "$WORK/capi" dev >/dev/null
make -s -C c-examples KDRUNTIME_PREFIX="$WORK/capi" OUT="$WORK" "$WORK/classify"
# The C example and the firmware read binary PPM: the image decoded as kdrun decodes it.
"$HOST/to-ppm" "$IMAGE" "$WORK/image.ppm"

# raw_of FILE: the values of the "raw: ..." line a program printed, single-spaced.
raw_of() { sed -n 's/^raw: *//p' "$1" | tr -s ' ' | sed 's/ *$//'; }

say "1. kdrun on the host"
"$HOST/kdrun" run "$MODEL" "$IMAGE" --config "$EXPORT/inference_config.json" --top-k 3 | tee "$WORK/kdrun.txt"
"$HOST/kdrun" run "$MODEL" "$IMAGE" --json > "$WORK/kdrun.json"
"$HOST/kdrun" run "$MODEL" "$WORK/image.ppm" --json > "$WORK/kdrun-ppm.json"
json_raw() { "$PYTHON" -c 'import json,sys; print(" ".join(str(v) for v in json.load(open(sys.argv[1]))["raw_output"]))' "$1"; }
kdrun_raw="$(json_raw "$WORK/kdrun.json")"
[ "$(json_raw "$WORK/kdrun-ppm.json")" = "$kdrun_raw" ] \
    || fail "kdrun classifies the PPM conversion differently from $IMAGE (see $WORK)"

say "2. the C example (c-examples/classify.c, static libkdruntime.a)"
"$WORK/classify" "$MODEL" "$WORK/image.ppm" "$EXPORT/labels.txt" 3 | tee "$WORK/c.txt"
c_raw="$(raw_of "$WORK/c.txt")"

say "3. the Cortex-M4F firmware under qemu-system-arm (MODEL_DATA_DIR=$EXPORT)"
firmware_run "$WORK/firmware.log" BUILD="$WORK/firmware" MODEL="$MODEL" MODEL_DATA_DIR="$EXPORT" \
    PHOTO="$WORK/image.ppm" PHOTO_NAME="$(basename "$IMAGE")"
cat "$WORK/firmware.log"
fw_raw="$(raw_of "$WORK/firmware.log")"
fw_top="$(sed -n 's/^top-1: class //p' "$WORK/firmware.log")"

# top1 RAW: the index of the largest value (the first on ties, as kdrun and the C example).
top1() { tr ' ' '\n' <<<"$1" | awk 'NR == 1 || $1 > best { best = $1; i = NR - 1 } END { print i }'; }
label() { sed -n "$(( $1 + 1 ))p" "$EXPORT/labels.txt"; }
say "results on $(basename "$IMAGE")"
printf '  %-9s top-1 class %s (%s)  raw: %s\n' \
    kdrun "$(top1 "$kdrun_raw")" "$(label "$(top1 "$kdrun_raw")")" "$kdrun_raw" \
    C "$(top1 "$c_raw")" "$(label "$(top1 "$c_raw")")" "$c_raw" \
    firmware "$fw_top" "$(label "$fw_top")" "$fw_raw"
[ -n "$kdrun_raw" ] && [ "$c_raw" = "$kdrun_raw" ] && [ "$fw_raw" = "$kdrun_raw" ] \
    || fail "the three raw outputs differ (logs in $WORK)"
[ "$fw_top" = "$(top1 "$kdrun_raw")" ] || fail "the firmware's top-1 $fw_top differs from kdrun's"
say "ok: kdrun, the C example and the firmware agree byte for byte ($((SECONDS - t0)) s)"
