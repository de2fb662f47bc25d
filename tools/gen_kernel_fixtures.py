#!/usr/bin/env python3
"""Generates parity fixtures for kdruntime's int8 reference kernels.

Each case is a single-operator int8 TFLite model built by hand (schema_py_generated + flatbuffers),
run on random inputs under ai-edge-litert's BUILTIN_REF resolver. The fixture stores the operator
parameters, the inputs and TFLite's outputs; runtime/tests/kernel_parity.rs replays them.

Usage: tools/gen_kernel_fixtures.py [--cases N] [--seed S] [--out DIR] [--ops add,mul,...]
Default output: runtime/tests/fixtures/kernels/<op>.txt (kept small: they are committed).
A larger sweep can be written elsewhere and replayed with KD_KERNEL_FIXTURES=DIR.

Format: plain text, one case per block:
    case <op> <n>
    <key> <value> <value> ...      numbers in decimal, floats as shortest float32 repr
    <key>.hex <hex bytes>          int8 tensors as two's-complement hex
    end
"""
import argparse
import os
import sys

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as S
from ai_edge_litert.interpreter import Interpreter, OpResolverType

ACT = {"none": 0, "relu": 1, "relu6": 3}


def f32(x):
    return float(np.float32(x))


class Builder:
    """Collects tensors and buffers of a one-operator subgraph."""

    def __init__(self):
        self.tensors = []
        self.buffers = [S.BufferT()]  # buffer 0: the empty sentinel

    def tensor(self, shape, ttype, scales=None, zps=None, qdim=0, data=None):
        t = S.TensorT()
        t.shape = list(shape)
        t.type = ttype
        t.name = f"t{len(self.tensors)}"
        if scales is not None:
            q = S.QuantizationParametersT()
            q.scale = [float(s) for s in scales]
            q.zeroPoint = [int(z) for z in zps]
            q.quantizedDimension = qdim
            t.quantization = q
        if data is not None:
            b = S.BufferT()
            b.data = list(np.ascontiguousarray(data).tobytes())
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        self.tensors.append(t)
        return len(self.tensors) - 1

    def i8(self, shape, scale, zp):
        return self.tensor(shape, S.TensorType.INT8, [scale], [zp])

    def model(self, opcode, inputs, outputs, opt_type=0, opts=None):
        oc = S.OperatorCodeT()
        oc.builtinCode = opcode
        oc.deprecatedBuiltinCode = min(opcode, 127)
        oc.version = 1
        op = S.OperatorT()
        op.opcodeIndex = 0
        op.inputs = list(inputs)
        op.outputs = list(outputs)
        op.builtinOptionsType = opt_type
        op.builtinOptions = opts
        sg = S.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = [i for i in inputs if self.tensors[i].buffer == 0]
        sg.outputs = list(outputs)
        sg.operators = [op]
        m = S.ModelT()
        m.version = 3
        m.operatorCodes = [oc]
        m.subgraphs = [sg]
        m.buffers = self.buffers
        fb = flatbuffers.Builder(1024)
        fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
        return bytes(fb.Output())


def run(model, inputs):
    it = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def rand_scale(rng, lo=-6.0, hi=2.0):
    return f32(10 ** rng.uniform(lo, hi))


def rand_zp(rng):
    r = rng.random()
    if r < 0.15:
        return -128
    if r < 0.3:
        return 127
    return int(rng.integers(-128, 128))


def rand_i8(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def hexs(a):
    return np.asarray(a, dtype=np.int8).tobytes().hex()


def nums(v):
    if isinstance(v, (list, tuple, np.ndarray)):
        return " ".join(nums(x) for x in v)
    if isinstance(v, (float, np.floating)):
        return str(np.float32(v))
    return str(int(v))


# --- operators: each returns (fields, model, inputs); fields is a list of (key, value) ----------------


def case_depthwise(rng):
    n = int(rng.integers(1, 3))
    c = int(rng.integers(1, 5))
    m = int(rng.choice([1, 2, 3]))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.choice([1, 2, 3])), int(rng.choice([1, 2, 3]))
    dh, dw = int(rng.choice([1, 2])), int(rng.choice([1, 2]))
    h, w = int(rng.integers(max(1, (kh - 1) * dh + 1), 9)), int(rng.integers(max(1, (kw - 1) * dw + 1), 9))
    pad = int(rng.choice([0, 1]))  # SAME, VALID
    act = str(rng.choice(list(ACT)))
    oc = c * m
    in_s, in_z = rand_scale(rng), rand_zp(rng)
    out_s, out_z = rand_scale(rng, -3, 1), rand_zp(rng)
    f_s = [rand_scale(rng, -4, 0) for _ in range(oc)]
    filt = rng.integers(-127, 128, size=(1, kh, kw, oc), dtype=np.int8)
    bias = rng.integers(-20000, 20000, size=(oc,), dtype=np.int32)
    if pad == 0:
        oh, ow = -(-h // sh), -(-w // sw)
    else:
        oh, ow = (h - (kh - 1) * dh - 1) // sh + 1, (w - (kw - 1) * dw - 1) // sw + 1
    b = Builder()
    ti = b.i8([n, h, w, c], in_s, in_z)
    tf = b.tensor([1, kh, kw, oc], S.TensorType.INT8, f_s, [0] * oc, qdim=3, data=filt)
    tb = b.tensor([oc], S.TensorType.INT32, [f32(in_s * s) for s in f_s], [0] * oc, data=bias)
    to = b.i8([n, oh, ow, oc], out_s, out_z)
    o = S.DepthwiseConv2DOptionsT()
    o.padding, o.strideH, o.strideW, o.depthMultiplier = pad, sh, sw, m
    o.dilationHFactor, o.dilationWFactor, o.fusedActivationFunction = dh, dw, ACT[act]
    model = b.model(4, [ti, tf, tb], [to], S.BuiltinOptions.DepthwiseConv2DOptions, o)
    x = rand_i8(rng, (n, h, w, c))
    fields = [
        ("input_shape", [n, h, w, c]), ("filter_shape", [1, kh, kw, oc]), ("output_shape", [n, oh, ow, oc]),
        ("stride", [sh, sw]), ("dilation", [dh, dw]), ("padding", pad), ("depth_multiplier", m),
        ("activation", ACT[act]), ("input_q", [in_s, in_z]), ("output_q", [out_s, out_z]),
        ("filter_scales", f_s), ("bias", bias), ("filter.hex", filt), ("in0.hex", x),
    ]
    return fields, model, [x]


def broadcast_shapes(rng, max_rank):
    rank = int(rng.integers(1, max_rank + 1))
    out = [int(rng.integers(1, 5)) for _ in range(rank)]
    def sub():
        r = int(rng.integers(0, rank + 1)) if rng.random() < 0.5 else rank
        shp = out[rank - r:]
        return [d if rng.random() < 0.6 else 1 for d in shp]
    a, b = sub(), sub()
    if rng.random() < 0.25:
        b = list(a)
    return a, b


def case_binary(rng, opcode, name):
    a_shape, b_shape = broadcast_shapes(rng, 5 if opcode == 0 else 5)
    out_shape = list(np.broadcast_shapes(tuple(a_shape), tuple(b_shape)))
    act = str(rng.choice(list(ACT)))
    a_s, a_z = rand_scale(rng), rand_zp(rng)
    b_s, b_z = (a_s, a_z) if rng.random() < 0.2 else (rand_scale(rng), rand_zp(rng))
    o_s, o_z = rand_scale(rng, -4 if opcode == 18 else -3, 1), rand_zp(rng)
    b = Builder()
    ta, tb = b.i8(a_shape, a_s, a_z), b.i8(b_shape, b_s, b_z)
    to = b.i8(out_shape, o_s, o_z)
    if opcode == 0:
        o, ot = S.AddOptionsT(), S.BuiltinOptions.AddOptions
    else:
        o, ot = S.MulOptionsT(), S.BuiltinOptions.MulOptions
    o.fusedActivationFunction = ACT[act]
    model = b.model(opcode, [ta, tb], [to], ot, o)
    x, y = rand_i8(rng, a_shape), rand_i8(rng, b_shape)
    fields = [
        ("a_shape", a_shape), ("b_shape", b_shape), ("output_shape", out_shape), ("activation", ACT[act]),
        ("a_q", [a_s, a_z]), ("b_q", [b_s, b_z]), ("output_q", [o_s, o_z]), ("in0.hex", x), ("in1.hex", y),
    ]
    return fields, model, [x, y]


def case_pool(rng, opcode):
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    fh, fw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.choice([1, 2, 3])), int(rng.choice([1, 2, 3]))
    h, w = int(rng.integers(fh, 9)), int(rng.integers(fw, 9))
    pad = int(rng.choice([0, 1]))
    act = str(rng.choice(list(ACT)))
    s, z = rand_scale(rng), rand_zp(rng)
    if pad == 0:
        oh, ow = -(-h // sh), -(-w // sw)
    else:
        oh, ow = (h - fh) // sh + 1, (w - fw) // sw + 1
    # TFLite's int8 pooling does not requantise; a different output quantisation only moves the
    # fused activation bounds. The converter keeps them equal, some cases do not.
    os_, oz = (s, z) if rng.random() < 0.7 else (rand_scale(rng), rand_zp(rng))
    b = Builder()
    ti, to = b.i8([n, h, w, c], s, z), b.i8([n, oh, ow, c], os_, oz)
    o = S.Pool2DOptionsT()
    o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = pad, sh, sw, fh, fw
    o.fusedActivationFunction = ACT[act]
    model = b.model(opcode, [ti], [to], S.BuiltinOptions.Pool2DOptions, o)
    x = rand_i8(rng, (n, h, w, c))
    fields = [
        ("input_shape", [n, h, w, c]), ("output_shape", [n, oh, ow, c]), ("filter", [fh, fw]),
        ("stride", [sh, sw]), ("padding", pad), ("activation", ACT[act]), ("q", [s, z]), ("output_q", [os_, oz]),
        ("in0.hex", x),
    ]
    return fields, model, [x]


def case_pad(rng):
    rank = int(rng.integers(1, 5))
    shape = [int(rng.integers(1, 5)) for _ in range(rank)]
    pads = rng.integers(0, 3, size=(rank, 2)).astype(np.int32)
    out = [d + int(p[0]) + int(p[1]) for d, p in zip(shape, pads)]
    s, z = rand_scale(rng), rand_zp(rng)
    b = Builder()
    ti = b.i8(shape, s, z)
    tp = b.tensor([rank, 2], S.TensorType.INT32, data=pads)
    to = b.i8(out, s, z)
    model = b.model(34, [ti, tp], [to], S.BuiltinOptions.PadOptions, S.PadOptionsT())
    x = rand_i8(rng, shape)
    fields = [("input_shape", shape), ("paddings", pads.flatten()), ("output_shape", out),
              ("q", [s, z]), ("in0.hex", x)]
    return fields, model, [x]


def case_concat(rng):
    rank = int(rng.integers(1, 5))
    base = [int(rng.integers(1, 4)) for _ in range(rank)]
    axis = int(rng.integers(-rank, rank))
    k = int(rng.integers(1, 4))
    shapes = []
    for _ in range(k):
        s = list(base)
        s[axis] = int(rng.integers(1, 4))
        shapes.append(s)
    out = list(base)
    out[axis] = sum(s[axis] for s in shapes)
    s, z = rand_scale(rng), rand_zp(rng)
    b = Builder()
    ins = [b.i8(sh, s, z) for sh in shapes]
    to = b.i8(out, s, z)
    o = S.ConcatenationOptionsT()
    o.axis = axis
    model = b.model(2, ins, [to], S.BuiltinOptions.ConcatenationOptions, o)
    xs = [rand_i8(rng, sh) for sh in shapes]
    fields = [("rank", rank), ("axis", axis), ("count", k), ("output_shape", out), ("q", [s, z])]
    for i, (sh, x) in enumerate(zip(shapes, xs)):
        fields.append((f"shape{i}", sh))
        fields.append((f"in{i}.hex", x))
    return fields, model, xs


def case_unary(rng, opcode, name):
    rank = int(rng.integers(1, 5))
    shape = [int(rng.integers(1, 6)) for _ in range(rank)]
    in_s, in_z = rand_scale(rng, -3, 1), rand_zp(rng)
    if opcode in (14, 25):  # LOGISTIC, SOFTMAX: fixed output quantisation
        out_s, out_z = f32(1.0 / 256), -128
    else:
        out_s, out_z = rand_scale(rng, -3, 1), rand_zp(rng)
        if rng.random() < 0.2:
            out_s, out_z = in_s, in_z
        if opcode == 117:  # HARD_SWISH needs input_scale / 128 / output_scale < 1
            out_s = max(out_s, f32(in_s / 100))
    b = Builder()
    ti, to = b.i8(shape, in_s, in_z), b.i8(shape, out_s, out_z)
    beta = 1.0
    if opcode == 25:
        o = S.SoftmaxOptionsT()
        beta = f32(1.0 if rng.random() < 0.6 else 10 ** rng.uniform(-1, 1))
        o.beta = beta
        model = b.model(opcode, [ti], [to], S.BuiltinOptions.SoftmaxOptions, o)
    elif opcode == 117:
        model = b.model(opcode, [ti], [to], S.BuiltinOptions.HardSwishOptions, S.HardSwishOptionsT())
    else:
        model = b.model(opcode, [ti], [to])
    if opcode == 14:
        # Every int8 value once (the LUT) then random ones.
        flat = int(np.prod(shape))
        x = np.resize(np.arange(-128, 128, dtype=np.int8), flat)
        rng.shuffle(x)
        x = x.reshape(shape)
    else:
        x = rand_i8(rng, shape)
    fields = [("shape", shape), ("input_q", [in_s, in_z]), ("output_q", [out_s, out_z]), ("in0.hex", x)]
    if opcode == 25:
        fields.append(("beta", beta))
    return fields, model, [x]


def case_lut_sweep(rng, opcode):
    """All 256 inputs at once for one random input quantisation (LOGISTIC / HARD_SWISH)."""
    shape = [256]
    in_s, in_z = rand_scale(rng, -3, 1), rand_zp(rng)
    if opcode == 14:
        out_s, out_z = f32(1.0 / 256), -128
    else:
        out_s, out_z = max(rand_scale(rng, -3, 1), f32(in_s / 100)), rand_zp(rng)
    b = Builder()
    ti, to = b.i8(shape, in_s, in_z), b.i8(shape, out_s, out_z)
    if opcode == 117:
        model = b.model(opcode, [ti], [to], S.BuiltinOptions.HardSwishOptions, S.HardSwishOptionsT())
    else:
        model = b.model(opcode, [ti], [to])
    x = np.arange(-128, 128, dtype=np.int8)
    fields = [("shape", shape), ("input_q", [in_s, in_z]), ("output_q", [out_s, out_z]), ("in0.hex", x)]
    return fields, model, [x]


OPS = {
    "depthwise_conv": case_depthwise,
    "add": lambda r: case_binary(r, 0, "add"),
    "mul": lambda r: case_binary(r, 18, "mul"),
    "average_pool": lambda r: case_pool(r, 1),
    "max_pool": lambda r: case_pool(r, 17),
    "pad": case_pad,
    "concatenation": case_concat,
    "softmax": lambda r: case_unary(r, 25, "softmax"),
    "logistic": lambda r: case_unary(r, 14, "logistic") if r.random() < 0.5 else case_lut_sweep(r, 14),
    "hard_swish": lambda r: case_unary(r, 117, "hard_swish") if r.random() < 0.5 else case_lut_sweep(r, 117),
    "relu": lambda r: case_unary(r, 19, "relu"),
    "relu6": lambda r: case_unary(r, 21, "relu6"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=32)
    ap.add_argument("--seed", type=int, default=20261101)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "runtime", "tests",
                                                  "fixtures", "kernels"))
    ap.add_argument("--ops", default=",".join(OPS))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in args.ops.split(","):
        rng = np.random.default_rng([args.seed, list(OPS).index(name)])
        lines, values = [], 0
        for i in range(args.cases):
            fields, model, inputs = OPS[name](rng)
            y = run(model, inputs)
            values += y.size
            lines.append(f"case {name} {i}")
            for k, v in fields:
                lines.append(f"{k} {hexs(v) if k.endswith('.hex') else nums(v)}")
            lines.append(f"output_shape_actual {nums(list(y.shape))}")
            lines.append(f"out.hex {hexs(y)}")
            lines.append("end")
        path = os.path.join(args.out, f"{name}.txt")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{name}: {args.cases} cases, {values} output values -> {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
