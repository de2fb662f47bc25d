#!/usr/bin/env bash
# The main job end to end, as far as the project goes today (run by `make demo` after setup and
# a release build): import and validate the default data set with kdtrain, train a teacher and
# a student from scratch on it (distillation, QAT and export are not built yet), write a small int8
# network, run it on kdruntime through kdrun on a real photo, check kdruntime's output byte
# for byte against TFLite's reference kernels, and run the C example on the same photo; once
# kdtrain train writes an export folder, classify a test image with it through kdrun, the C
# example and the Cortex-M4F firmware under QEMU (scripts/classify-exported.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/target/release"
OUT="$ROOT/out/demo"
PY="${KDEDGE_PYTHON:-$ROOT/.venv/bin/python}"
mkdir -p "$OUT"
t0=$(date +%s)
say() { printf '\n== %s\n' "$*"; }

say "1. import a Fashion-MNIST subset (real images) and validate it"
rm -rf "$OUT/data"
"$BIN/kdtrain" data import fashion-mnist --raw data/raw/fashion-mnist --out "$OUT/data" --limit 1000 --seed 1
"$BIN/kdtrain" data validate "$OUT/data"   # also prints the statistics

mapfile -t LABELS < <("$BIN/kdtrain" data stats "$OUT/data" --json | "$PY" -c 'import json,sys; print("\n".join(json.load(sys.stdin)["classes"]))' 2>/dev/null || true)

say "2. train a teacher and a student from scratch on it (kdtrain train; libtorch on $("$BIN/kdtrain" info | sed -n 's/^device: //p'))"
rm -rf "$OUT/train"
"$BIN/kdtrain" train --data-dir "$OUT/data" --out-dir "$OUT/train" --config configs/demo.yaml --quiet

say "3. a small int8 network (MobileNetV2-0.35, 96x96; untrained weights, real-photo calibration)"
"$BIN/demo-model" "$OUT" "${LABELS[@]}"
"$BIN/kdrun" info "$OUT/model.tflite" | head -12

say "4. classify real photos on kdruntime (decode -> letterbox -> int8 inference)"
for photo in data/raw/photos/chelsea.png data/raw/photos/china.jpg; do
    echo "-- $photo"
    "$BIN/kdrun" run "$OUT/model.tflite" "$photo" --labels "$OUT/labels.txt" --top-k 3
done

say "5. kdruntime vs TFLite's reference kernels (BUILTIN_REF), byte for byte"
"$BIN/kdrun" raw "$OUT/model.tflite" "$OUT/input.u8" "$OUT/kdruntime.i8"
"$PY" tools/refharness.py run --model "$OUT/model.tflite" --backend ref --input "$OUT/input.u8" \
    --output "$OUT/tflite_ref.i8" --json "$OUT/tflite_ref.json"
if cmp -s "$OUT/kdruntime.i8" "$OUT/tflite_ref.i8"; then
    echo "bit-exact: $(stat -c %s "$OUT/kdruntime.i8") output bytes equal"
else
    echo "MISMATCH between kdruntime and TFLite BUILTIN_REF" >&2
    exit 1
fi

say "6. the same model and photo through the C API (c-examples/classify.c, static libkdruntime.a)"
make --no-print-directory -s c-examples > "$OUT/c_build.log" 2>&1 || { cat "$OUT/c_build.log"; exit 1; }
c-examples/classify "$OUT/model.tflite" "$OUT/photo.ppm" "$OUT/labels.txt" 3 | tee "$OUT/c_example.txt"
"$BIN/kdrun" run "$OUT/model.tflite" "$OUT/photo.ppm" --json > "$OUT/kdrun_photo.json"
c_raw=$(grep '^raw:' "$OUT/c_example.txt" | cut -d: -f2 | tr -s ' ' | sed 's/^ //; s/ $//')
rust_raw=$("$PY" -c 'import json,sys; print(" ".join(str(v) for v in json.load(open(sys.argv[1]))["raw_output"]))' "$OUT/kdrun_photo.json")
if [ "$c_raw" = "$rust_raw" ]; then
    echo "C example and kdrun agree on every raw output: $c_raw"
else
    echo "MISMATCH: C example [$c_raw] vs kdrun [$rust_raw]" >&2
    exit 1
fi

say "7. the exported files on a test image: kdrun, the C example and the Cortex-M4F firmware (QEMU)"
# scripts/classify-exported.sh needs the export folder kdtrain train writes (model_qat_int8.tflite,
# model_data.c/.h, labels.txt, inference_config.json); it fails unless all three agree.
export_dir="$(find "$OUT/train" -name model_qat_int8.tflite -printf '%h\n' | sort | head -1)"
if [ -n "$export_dir" ]; then
    IFS=, read -r image label < "$OUT/data/test.txt"
    echo "-- $image (labelled $label) with $export_dir"
    bash scripts/classify-exported.sh "$export_dir" "$OUT/data/images/$image"
else
    echo "kdtrain train wrote no export folder under $OUT/train yet: step skipped"
fi

echo
echo "demo finished in $(( $(date +%s) - t0 )) s; outputs in out/demo/"
