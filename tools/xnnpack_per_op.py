#!/usr/bin/env python3
"""Per-operator latency of TFLite's XNNPACK delegate, for comparison with `bench profile`.

XNNPACK runs a whole graph as one delegate node, so TFLite cannot time its operators. This tool
cuts the model into one single-operator model per operator (same tensors, weights and
quantisation; the operator's non-constant inputs become the model's inputs), times each on the
XNNPACK delegate with 1 thread (median of --runs invokes after --warmup), and prints one line per
operator in the numbering `bench profile` uses:

    index OPERATOR output-shape median-us

A single operator runs with its weights hot in cache, so the figures are a lower bound for the
operator inside the whole network.

Run it with the project's venv:
    .venv/bin/python tools/xnnpack_per_op.py target/bench/models/mobilenet_v2_1.0_224.tflite
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter


def operator_names():
    """Builtin operator code -> name."""
    codes = schema.BuiltinOperator
    return {v: k for k, v in vars(codes).items() if not k.startswith("_") and isinstance(v, int)}


def single_operator_models(path):
    """Yields (index, name, output shape, model bytes) for each operator of subgraph 0."""
    with open(path, "rb") as f:
        buf = f.read()
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    except Exception as e:  # the flatbuffer reader raises assorted errors on bad input
        sys.exit(f"{path}: not a readable .tflite model ({e})")
    if not model.subgraphs:
        sys.exit(f"{path}: the model has no subgraph")
    graph = model.subgraphs[0]
    names = operator_names()

    def constant(t):
        data = model.buffers[graph.tensors[t].buffer].data
        return data is not None and len(data) > 0

    for i, op in enumerate(list(graph.operators)):
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        graph.operators = [op]
        graph.inputs = [t for t in op.inputs if t >= 0 and not constant(t)]
        graph.outputs = list(op.outputs)
        builder = flatbuffers.Builder(0)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        shape = "x".join(str(d) for d in graph.tensors[op.outputs[0]].shape)
        yield i, name, shape, bytes(builder.Output())


def time_on_xnnpack(model_bytes, runs, warmup, rng):
    """Median invoke latency in microseconds on the XNNPACK delegate, 1 thread."""
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(model_bytes)
        f.flush()
        interp = Interpreter(model_path=f.name, num_threads=1)
        interp.allocate_tensors()
    for d in interp.get_input_details():
        dtype = np.dtype(d["dtype"])
        if dtype.kind == "f":
            data = rng.standard_normal(d["shape"]).astype(dtype)
        else:
            info = np.iinfo(dtype)
            data = rng.integers(info.min, info.max, size=d["shape"], endpoint=True).astype(dtype)
        interp.set_tensor(d["index"], data)
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help=".tflite model")
    ap.add_argument("--runs", type=int, default=50, help="timed invokes per operator")
    ap.add_argument("--warmup", type=int, default=5, help="untimed invokes first")
    args = ap.parse_args()
    if args.runs < 1 or args.warmup < 0:
        sys.exit("--runs must be at least 1 and --warmup at least 0")
    if not os.path.isfile(args.model):
        sys.exit(f"{args.model}: no such file")
    rng = np.random.default_rng(0)
    total = 0.0
    for i, name, shape, model_bytes in single_operator_models(args.model):
        us = time_on_xnnpack(model_bytes, args.runs, args.warmup, rng)
        total += us
        print(f"{i} {name} {shape} {us:.1f}", flush=True)
    print(f"total {total:.0f} us (sum of per-operator medians)")


if __name__ == "__main__":
    main()
