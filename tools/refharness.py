#!/usr/bin/env python3
"""Reference harness: runs a model in the real interpreters and writes raw outputs + a JSON report.

Backends:
  ref      TFLite BUILTIN_REF (reference kernels; the oracle kdruntime must match bit for bit)
  builtin  TFLite BUILTIN_WITHOUT_DEFAULT_DELEGATES (optimised kernels, no XNNPACK)
  xnnpack  TFLite AUTO (default XNNPACK delegate), 1 thread
  tflm     TFLite Micro (tflite_micro.runtime.Interpreter), reports the arena bytes it used
  onnx     ONNX Runtime, 1 intra/inter-op thread, ORT_ENABLE_BASIC, sequential execution

The input file holds one or more runs back to back; one run is every model input's raw bytes in
input order. The output file gets, per run, every output's raw bytes in output order.

Run it with the project's venv: .venv/bin/python tools/refharness.py --help
"""

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time

import numpy as np

BACKENDS = ("ref", "builtin", "xnnpack", "tflm", "onnx")


class HarnessError(Exception):
    """An error with a message meant for the user (no traceback)."""


@contextlib.contextmanager
def capture_fd2():
    """Captures what C++ code writes to file descriptor 2 (Python's sys.stderr cannot see it)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        box = {"text": ""}
        try:
            yield box
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box["text"] = tmp.read().decode("utf-8", "replace")


def versions():
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for pkg in ("ai-edge-litert", "tflite-micro", "onnxruntime", "onnx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def read_bytes(path, what):
    if not os.path.isfile(path):
        raise HarnessError(f"{what} file not found: {path}")
    with open(path, "rb") as f:
        return f.read()


def np_dtype_name(dt):
    return np.dtype(dt).name


def tflite_details(d):
    q = d.get("quantization_parameters", {})
    return {
        "name": d.get("name"),
        "shape": [int(x) for x in d["shape"]],
        "dtype": np_dtype_name(d["dtype"]),
        "scales": [float(s) for s in np.asarray(q.get("scales", []), dtype=np.float64).ravel()],
        "zero_points": [int(z) for z in np.asarray(q.get("zero_points", []), dtype=np.int64).ravel()],
        "quantized_dimension": int(q.get("quantized_dimension", 0)),
    }


def nbytes(info):
    return int(np.prod(info["shape"], dtype=np.int64)) * np.dtype(info["dtype"]).itemsize


# ---------------------------------------------------------------------------------------------
# Backends: each exposes inputs/outputs (tensor info dicts), set(i, array), invoke(), get(i).


class LiteRT:
    def __init__(self, model_bytes, backend):
        from ai_edge_litert import interpreter as litert

        kinds = {
            "ref": litert.OpResolverType.BUILTIN_REF,
            "builtin": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            "xnnpack": litert.OpResolverType.AUTO,
        }
        self.resolver = kinds[backend].name
        with capture_fd2() as log:
            try:
                self.it = litert.Interpreter(
                    model_content=model_bytes, num_threads=1, experimental_op_resolver_type=kinds[backend]
                )
                self.it.allocate_tensors()
            except Exception as e:  # the interpreter raises ValueError/RuntimeError with its log
                raise HarnessError(f"TFLite ({backend}) could not load the model: {e}") from None
        self.log = log["text"]
        self.delegate_applied = "XNNPACK" in self.log if backend == "xnnpack" else False
        self.in_det = self.it.get_input_details()
        self.out_det = self.it.get_output_details()
        self.inputs = [tflite_details(d) for d in self.in_det]
        self.outputs = [tflite_details(d) for d in self.out_det]

    def set(self, i, arr):
        self.it.set_tensor(self.in_det[i]["index"], arr)

    def invoke(self):
        self.it.invoke()

    def get(self, i):
        return self.it.get_tensor(self.out_det[i]["index"])


def count_io(model_bytes):
    """Number of subgraph-0 inputs and outputs, read with the LiteRT interpreter's loader."""
    from ai_edge_litert import interpreter as litert

    it = litert.Interpreter(
        model_content=model_bytes, experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF
    )
    return len(it.get_input_details()), len(it.get_output_details())


class Tflm:
    def __init__(self, model_bytes, arena_size=None):
        import tflite_micro

        self.resolver = "tflite_micro"
        try:
            n_in, n_out = count_io(model_bytes)
        except Exception as e:
            raise HarnessError(f"TFLite could not parse the model to count its inputs: {e}") from None
        with capture_fd2() as log:
            try:
                self.it = tflite_micro.runtime.Interpreter.from_bytes(
                    model_bytes, arena_size=arena_size or max(len(model_bytes) * 10, 1 << 20)
                )
            except Exception as e:
                err = e
            else:
                err = None
        self.log = log["text"]
        if err is not None:
            raise HarnessError(f"TFLite Micro could not load the model: {err}\n{self.log.strip()}")
        self.inputs = [tflite_details(self.it.get_input_details(i)) for i in range(n_in)]
        self.outputs = [tflite_details(self.it.get_output_details(i)) for i in range(n_out)]
        self.arena_bytes = None

    def measure_arena(self):
        """Arena bytes TFLM's RecordingMicroAllocator reports (it prints them on fd 2)."""
        with capture_fd2() as log:
            self.it.print_allocations()
        m = re.search(r"Arena allocation total (\d+) bytes", log["text"])
        if not m:
            raise HarnessError(f"TFLite Micro did not report its arena usage:\n{log['text'].strip()}")
        self.arena_bytes = int(m.group(1))
        self.arena_report = log["text"].strip()

    def set(self, i, arr):
        self.it.set_input(arr, i)

    def invoke(self):
        self.it.invoke()

    def get(self, i):
        return self.it.get_output(i)


ORT_TYPES = {
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(float)": "float32",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(int16)": "int16",
}


class Onnx:
    def __init__(self, model_bytes):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self.resolver = "onnxruntime CPUExecutionProvider ORT_ENABLE_BASIC sequential 1 thread"
        try:
            self.sess = ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise HarnessError(f"ONNX Runtime could not load the model: {e}") from None
        self.inputs = [self._info(a) for a in self.sess.get_inputs()]
        self.outputs = [self._info(a) for a in self.sess.get_outputs()]
        self.feed = {}
        self.result = None

    @staticmethod
    def _info(arg):
        if arg.type not in ORT_TYPES:
            raise HarnessError(f"ONNX tensor '{arg.name}' has unsupported type {arg.type}")
        if not all(isinstance(d, int) for d in arg.shape):
            raise HarnessError(f"ONNX tensor '{arg.name}' has a dynamic shape {arg.shape}; fix it before running")
        return {"name": arg.name, "shape": list(arg.shape), "dtype": ORT_TYPES[arg.type], "scales": [], "zero_points": [], "quantized_dimension": 0}

    def set(self, i, arr):
        self.feed[self.inputs[i]["name"]] = arr

    def invoke(self):
        self.result = self.sess.run(None, self.feed)

    def get(self, i):
        return self.result[i]


def open_backend(model_path, backend, model_bytes=None):
    if backend not in BACKENDS:
        raise HarnessError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    data = model_bytes if model_bytes is not None else read_bytes(model_path, "model")
    if backend == "onnx":
        return Onnx(data)
    if data[4:8] != b"TFL3":
        raise HarnessError(f"{model_path} is not a TFLite flatbuffer (no TFL3 identifier at offset 4)")
    if backend == "tflm":
        return Tflm(data)
    return LiteRT(data, backend)


def run_model(be, input_bytes, repeat=1, warmup=0, input_name="input", min_seconds=0.0, max_repeat=1000):
    """Runs every sample in input_bytes; returns (output bytes, report dict). Timing: `warmup`
    untimed invokes, then `repeat` timed passes over all samples, continued while the timed
    invokes total less than `min_seconds` (at most `max_repeat` passes)."""
    per_run = sum(nbytes(t) for t in be.inputs)
    if per_run == 0:
        raise HarnessError("the model has no input bytes")
    if len(input_bytes) == 0 or len(input_bytes) % per_run != 0:
        sizes = ", ".join(f"{t['name']} {t['shape']} {t['dtype']} = {nbytes(t)} B" for t in be.inputs)
        raise HarnessError(
            f"{input_name} holds {len(input_bytes)} bytes, not a positive multiple of the {per_run} bytes "
            f"one run needs ({sizes})"
        )
    runs = len(input_bytes) // per_run
    samples = []
    for r in range(runs):
        arrays, off = [], r * per_run
        for t in be.inputs:
            n = nbytes(t)
            arrays.append(np.frombuffer(input_bytes[off : off + n], dtype=t["dtype"]).reshape(t["shape"]).copy())
            off += n
        samples.append(arrays)

    def feed(arrays):
        for i, a in enumerate(arrays):
            be.set(i, a)

    out = bytearray()
    for arrays in samples:
        feed(arrays)
        try:
            be.invoke()
        except Exception as e:
            raise HarnessError(f"invoke failed: {e}") from None
        for i, t in enumerate(be.outputs):
            # np.asarray, not ascontiguousarray: the latter turns a rank-0 output into shape [1].
            o = np.asarray(be.get(i))
            if o.dtype.name != t["dtype"] or list(o.shape) != t["shape"]:
                raise HarnessError(f"output {i} came back as {o.dtype} {list(o.shape)}, expected {t['dtype']} {t['shape']}")
            out += o.tobytes(order="C")
    if isinstance(be, Tflm):
        be.measure_arena()

    latencies = []
    for _ in range(warmup):
        feed(samples[0])
        be.invoke()
    passes = 0
    while passes < repeat or (repeat > 0 and sum(latencies) < min_seconds * 1e6 and passes < max_repeat):
        for arrays in samples:
            feed(arrays)
            t0 = time.perf_counter_ns()
            be.invoke()
            latencies.append((time.perf_counter_ns() - t0) / 1e3)
        passes += 1
    lat_sorted = sorted(latencies)
    report = {
        "runs": runs,
        "inputs": be.inputs,
        "outputs": be.outputs,
        "resolver": be.resolver,
        "timing": {
            "warmup": warmup,
            "repeat": passes,
            "latencies_us": latencies,
            "median_us": statistics.median(latencies) if latencies else None,
            "p90_us": lat_sorted[min(len(lat_sorted) - 1, int(0.9 * len(lat_sorted)))] if latencies else None,
        },
        "tflm_arena_bytes": getattr(be, "arena_bytes", None),
    }
    if isinstance(be, LiteRT):
        report["xnnpack_delegate_applied"] = be.delegate_applied
    return bytes(out), report


def write_json(path, obj):
    text = json.dumps(obj, indent=1)
    if path == "-":
        print(text)
    else:
        with open(path, "w") as f:
            f.write(text + "\n")


def cmd_run(a):
    be = open_backend(a.model, a.backend)
    data = read_bytes(a.input, "input")
    out, report = run_model(be, data, a.repeat, a.warmup, a.input, a.min_seconds)
    report.update({"model": a.model, "backend": a.backend, "versions": versions()})
    with open(a.output, "wb") as f:
        f.write(out)
    if a.json:
        write_json(a.json, report)


def cmd_info(a):
    be = open_backend(a.model, a.backend)
    info = {"model": a.model, "backend": a.backend, "resolver": be.resolver, "inputs": be.inputs, "outputs": be.outputs, "versions": versions()}
    if isinstance(be, Tflm):
        be.measure_arena()
        info["tflm_arena_bytes"] = be.arena_bytes
    write_json(a.json or "-", info)


def cmd_batch(a):
    """Runs many models in one process. The manifest is a JSON list of {model, input, output}
    (paths relative to the manifest's folder); the report lists, per entry, ok + outputs or the
    error. Exit status 0 even when entries fail: the caller reads the report."""
    mpath = a.manifest
    entries = json.loads(read_bytes(mpath, "manifest"))
    base = os.path.dirname(os.path.abspath(mpath))
    results = []
    for e in entries:
        res = {"model": e.get("model")}
        try:
            model = os.path.join(base, e["model"])
            be = open_backend(model, a.backend)
            out, rep = run_model(be, read_bytes(os.path.join(base, e["input"]), "input"), repeat=0, input_name=e["input"])
            with open(os.path.join(base, e["output"]), "wb") as f:
                f.write(out)
            res.update(ok=True, outputs=rep["outputs"], inputs=rep["inputs"], tflm_arena_bytes=rep["tflm_arena_bytes"])
        except (HarnessError, KeyError, OSError, ValueError, RuntimeError) as err:
            res.update(ok=False, error=f"{type(err).__name__}: {err}")
        results.append(res)
    write_json(a.json, {"backend": a.backend, "versions": versions(), "results": results})


def cmd_onnx_fixture(a):
    """Writes a tiny ONNX model: uint8 [1,8] -> DequantizeLinear(0.5, 128) -> Relu ->
    QuantizeLinear(0.25, -3, int8). Output = clamp(2*max(x-128, 0) - 3, -128, 127), exact."""
    import onnx
    from onnx import TensorProto, helper

    inits = [
        helper.make_tensor("x_scale", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("x_zp", TensorProto.UINT8, [], [128]),
        helper.make_tensor("y_scale", TensorProto.FLOAT, [], [0.25]),
        helper.make_tensor("y_zp", TensorProto.INT8, [], [-3]),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["xf"]),
        helper.make_node("Relu", ["xf"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zp"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "kdedge_fixture",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [1, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="kdedge-refharness")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, a.out)


def cmd_onnx_conv(a):
    """Writes the ONNX twin of a one-convolution TFLite model described by a JSON spec (written by
    the kdrun ONNX Runtime test): uint8 NHWC image -> DequantizeLinear/QuantizeLinear to int8 (as
    TFLite's QUANTIZE) -> Transpose to NCHW -> QLinearConv (per-channel int8 weights, int32 bias,
    TFLite SAME/VALID padding) -> Transpose back to NHWC int8. Spec keys: height, width, channels,
    input_scale, input_zero_point, kernel, stride, padding ("same"|"valid"), out_channels,
    weights (OHWI int8, TFLite order), weight_scales, bias, output_scale, output_zero_point,
    metadata (optional {key: value} written as metadata_props)."""
    import onnx
    from onnx import TensorProto, helper

    spec = json.loads(read_bytes(a.spec, "spec"))
    try:
        h, w, c = spec["height"], spec["width"], spec["channels"]
        k, st, oc = spec["kernel"], spec["stride"], spec["out_channels"]
        wq = np.asarray(spec["weights"], dtype=np.int8).reshape(oc, k, k, c).transpose(0, 3, 1, 2)
        pad = spec["padding"]
    except (KeyError, ValueError) as e:
        raise HarnessError(f"{a.spec}: bad spec: {e}") from None
    if pad == "same":
        oh, ow = -(-h // st), -(-w // st)
        ph, pw = max((oh - 1) * st + k - h, 0), max((ow - 1) * st + k - w, 0)
        pads = [ph // 2, pw // 2, ph - ph // 2, pw - pw // 2]  # TFLite: the extra pixel at the end
    elif pad == "valid":
        oh, ow, pads = (h - k) // st + 1, (w - k) // st + 1, [0, 0, 0, 0]
    else:
        raise HarnessError(f"{a.spec}: padding must be 'same' or 'valid', not {pad!r}")
    s_in = float(spec["input_scale"])
    inits = [
        helper.make_tensor("in_scale", TensorProto.FLOAT, [], [s_in]),
        helper.make_tensor("in_zp_u8", TensorProto.UINT8, [], [int(spec["input_zero_point"])]),
        helper.make_tensor("in_zp_i8", TensorProto.INT8, [], [int(spec["input_zero_point"]) - 128]),
        helper.make_tensor("w", TensorProto.INT8, list(wq.shape), wq.ravel().tolist()),
        helper.make_tensor("w_scale", TensorProto.FLOAT, [oc], [float(x) for x in spec["weight_scales"]]),
        helper.make_tensor("w_zp", TensorProto.INT8, [oc], [0] * oc),
        helper.make_tensor("bias", TensorProto.INT32, [oc], [int(x) for x in spec["bias"]]),
        helper.make_tensor("out_scale", TensorProto.FLOAT, [], [float(spec["output_scale"])]),
        helper.make_tensor("out_zp", TensorProto.INT8, [], [int(spec["output_zero_point"])]),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["image", "in_scale", "in_zp_u8"], ["x_real"]),
        helper.make_node("QuantizeLinear", ["x_real", "in_scale", "in_zp_i8"], ["x_i8"]),
        helper.make_node("Transpose", ["x_i8"], ["x_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "QLinearConv",
            ["x_nchw", "in_scale", "in_zp_i8", "w", "w_scale", "w_zp", "out_scale", "out_zp", "bias"],
            ["y_nchw"],
            kernel_shape=[k, k],
            strides=[st, st],
            pads=pads,
        ),
        helper.make_node("Transpose", ["y_nchw"], ["output"], perm=[0, 2, 3, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "kdedge_conv_fixture",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, h, w, c])],
        [helper.make_tensor_value_info("output", TensorProto.INT8, [1, oh, ow, oc])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="kdedge-refharness")
    model.ir_version = 8
    for key, value in (spec.get("metadata") or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.checker.check_model(model)
    onnx.save(model, a.out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run one model on the runs in an input file")
    r.add_argument("--model", required=True)
    r.add_argument("--backend", required=True, choices=BACKENDS)
    r.add_argument("--input", required=True, help="raw input bytes, one or more runs back to back")
    r.add_argument("--output", required=True, help="raw output bytes are written here")
    r.add_argument("--json", help="report file ('-' for stdout)")
    r.add_argument("--repeat", type=int, default=1, help="timed passes over all runs (default 1)")
    r.add_argument("--warmup", type=int, default=0, help="untimed invokes before timing (default 0)")
    r.add_argument(
        "--min-seconds", type=float, default=0.0,
        help="keep timing passes (after --repeat, up to 1000) until the timed invokes total this long",
    )
    r.set_defaults(fn=cmd_run)

    i = sub.add_parser("info", help="print tensor details as the chosen backend sees them")
    i.add_argument("--model", required=True)
    i.add_argument("--backend", default="ref", choices=BACKENDS)
    i.add_argument("--json", help="report file (default stdout)")
    i.set_defaults(fn=cmd_info)

    b = sub.add_parser("batch", help="run many models listed in a JSON manifest in one process")
    b.add_argument("--manifest", required=True)
    b.add_argument("--backend", default="ref", choices=BACKENDS)
    b.add_argument("--json", required=True, help="report file")
    b.set_defaults(fn=cmd_batch)

    f = sub.add_parser("onnx-fixture", help="write a tiny uint8->int8 ONNX model for self-tests")
    f.add_argument("--out", required=True)
    f.set_defaults(fn=cmd_onnx_fixture)

    oc = sub.add_parser("onnx-conv", help="write the ONNX twin of a one-convolution TFLite model from a JSON spec")
    oc.add_argument("--spec", required=True)
    oc.add_argument("--out", required=True)
    oc.set_defaults(fn=cmd_onnx_conv)

    a = p.parse_args(argv)
    if getattr(a, "repeat", 1) < 0 or getattr(a, "warmup", 0) < 0:
        p.error("--repeat and --warmup must be >= 0")
    try:
        a.fn(a)
    except HarnessError as e:
        print(f"refharness: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
