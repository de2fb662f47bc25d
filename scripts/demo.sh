#!/usr/bin/env bash
# The main job end to end (run by `make demo` after setup and a release build): import and
# validate a Fashion-MNIST subset, run the whole pipeline with kdtrain train (teacher, student from
# scratch, distilled student, comparison, PTQ, QAT with the distillation loss, full-integer
# export), classify real images with the exported model through kdrun, then one test image
# through kdrun, the C example and the Cortex-M4F firmware under QEMU from the exported files
# (scripts/classify-exported.sh: they must agree byte for byte).
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

say "2. the whole pipeline: teacher, student from scratch, distilled student, comparison, PTQ, QAT, export (kdtrain train; libtorch on $("$BIN/kdtrain" info | sed -n 's/^device: //p'))"
rm -rf "$OUT/train"
"$BIN/kdtrain" train --data-dir "$OUT/data" --out-dir "$OUT/train" --config configs/demo.yaml --quiet
EXPORT="$OUT/train/quantize/export"
ls -l "$EXPORT"

say "3. classify real images with the exported int8 model on kdruntime (decode -> letterbox -> int8 inference)"
IFS=, read -r image label < "$OUT/data/test.txt"
for img in "$OUT/data/images/$image" data/raw/photos/chelsea.png; do
    echo "-- $img"
    "$BIN/kdrun" run "$EXPORT/model_qat_int8.tflite" "$img" --config "$EXPORT/inference_config.json" --top-k 3
done
echo "(the first is a Fashion-MNIST test image labelled $label; the cat is out of the classes)"

say "4. the exported files on that test image: kdrun, the C example (libkdruntime.a) and the Cortex-M4F firmware under QEMU (model_data.c in flash), byte for byte"
bash scripts/classify-exported.sh "$EXPORT" "$OUT/data/images/$image"

say "5. what the run measured"
cat "$OUT/train/comparison/comparison.md"
"$PY" - "$OUT/train/quantize/quantize.json" <<'PYEOF'
import json, sys
q = json.load(open(sys.argv[1]))
for k, name in (("float", "float32"), ("ptq_int8", "PTQ int8"), ("qat_int8", "QAT int8")):
    if q.get(k):
        print(f"{name}: test top-1 {q[k]['top1']:.4f} (kdruntime for int8)")
PYEOF

echo
echo "demo finished in $(( $(date +%s) - t0 )) s; outputs in out/demo/"
