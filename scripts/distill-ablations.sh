#!/usr/bin/env bash
# Distillation ablations for the accuracy study (BENCHMARKS.md): the student of CONFIG distilled
# from the teacher of a finished `kdtrain train` run, on the first N training images, once per
# variant of the distillation settings; writes RUN/ablations/ablations.json (variant -> test
# metrics) for scripts/accuracy-report.py.
#
# usage: scripts/distill-ablations.sh RUN_DIR DATA_DIR CONFIG [N]
set -euo pipefail
RUN="$1"; DATA="$2"; CONFIG="$3"; N="${4:-10000}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release"
OUT="$RUN/ablations"
mkdir -p "$OUT"
# variant name | sed edits of the distillation section
variants=(
  "T 4, kd_alpha 0.7, weighting none (base)|"
  "T 1|s/^  temperature: .*/  temperature: 1.0/"
  "T 2|s/^  temperature: .*/  temperature: 2.0/"
  "T 8|s/^  temperature: .*/  temperature: 8.0/"
  "kd_alpha 0.3|s/^  kd_alpha: .*/  kd_alpha: 0.3/"
  "kd_alpha 0.5|s/^  kd_alpha: .*/  kd_alpha: 0.5/"
  "kd_alpha 0.9|s/^  kd_alpha: .*/  kd_alpha: 0.9/"
  "weighting pmax|s/^  confidence: none/  confidence: pmax/"
  "weighting threshold 0.5|s/^  confidence: none/  confidence: threshold/"
  "kd_alpha 0 (labels only, the scratch recipe)|s/^  kd_alpha: .*/  kd_alpha: 0.0/"
)
echo "{" > "$OUT/ablations.json.tmp"
first=1
for i in "${!variants[@]}"; do
  name="${variants[$i]%%|*}"; edit="${variants[$i]#*|}"
  cfg="$OUT/v$i.yaml"
  if [ -n "$edit" ]; then sed -e "$edit" "$CONFIG" > "$cfg"; else cp "$CONFIG" "$cfg"; fi
  rm -rf "$OUT/v$i"
  echo "== $name"
  "$BIN/kdtrain" distill --data-dir "$DATA" --out-dir "$OUT/v$i" --config "$cfg" \
      --teacher "$RUN/teacher" --limit-train "$N" --quiet | tail -2
  [ $first = 1 ] || echo "," >> "$OUT/ablations.json.tmp"
  first=0
  printf '"%s": %s' "$name" "$(cat "$OUT/v$i/metrics.json")" >> "$OUT/ablations.json.tmp"
done
echo "}" >> "$OUT/ablations.json.tmp"
mv "$OUT/ablations.json.tmp" "$OUT/ablations.json"
echo "wrote $OUT/ablations.json"
