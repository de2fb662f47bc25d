#!/usr/bin/env python3
"""Generates the kdruntime core parity fixtures: small int8 TFLite models for the core kernels
(QUANTIZE, DEQUANTIZE, CONV_2D, FULLY_CONNECTED, MEAN, RESHAPE, SQUEEZE) written with the TFLite
schema's Python object API, plus inputs and the outputs of the real TFLite interpreter with its
reference kernels (ai-edge-litert, OpResolverType.BUILTIN_REF).

Output: runtime/tests/fixtures/core/<name>.tflite and <name>.io, where .io is
  u32 n_samples, u32 input_bytes, u32 output_bytes, then n_samples x (input bytes, output bytes)
(little-endian). Deterministic (fixed seeds). Run from the repository root:
  .venv/bin/python tools/gen_core_fixtures.py

Larger random sweeps over every operator run in kdtests' runtime_parity_ops test
(KD_PARITY_OPS=N scales it), which replaced this script's former --sweep mode.
"""

import os
import struct
import sys

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as S
from ai_edge_litert.interpreter import Interpreter, OpResolverType

OUT_DIR = os.path.join("runtime", "tests", "fixtures", "core")
# Models kdruntime must reject with a precise error (no reference outputs: TFLite itself is not
# asked about them; the expected errors are stated in runtime/tests/errors.rs).
INVALID_DIR = os.path.join("runtime", "tests", "fixtures", "core_invalid")


class Builder:
    """Collects tensors, buffers and operators of a single-subgraph model."""

    def __init__(self):
        self.tensors = []
        self.buffers = [S.BufferT()]  # buffer 0: the empty sentinel
        self.ops = []
        self.opcodes = []

    def tensor(self, name, shape, ttype, scale=None, zp=None, data=None, qdim=0):
        t = S.TensorT()
        t.name = name
        t.shape = list(shape)
        t.type = ttype
        t.buffer = 0
        if data is not None:
            b = S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = S.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(scale)]
            q.zeroPoint = [int(z) for z in np.atleast_1d(zp)]
            q.quantizedDimension = qdim
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code, inputs, outputs, opt_type=0, opt=None):
        if code not in self.opcodes:
            self.opcodes.append(code)
        o = S.OperatorT()
        o.opcodeIndex = self.opcodes.index(code)
        o.inputs = list(inputs)
        o.outputs = list(outputs)
        o.builtinOptionsType = opt_type
        o.builtinOptions = opt
        self.ops.append(o)

    def finish(self, inputs, outputs):
        sg = S.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = list(inputs)
        sg.outputs = list(outputs)
        sg.operators = self.ops
        sg.name = "main"
        m = S.ModelT()
        m.version = 3
        m.description = "kdruntime core fixture"
        m.subgraphs = [sg]
        m.buffers = self.buffers
        codes = []
        for c in self.opcodes:
            oc = S.OperatorCodeT()
            oc.builtinCode = c
            oc.deprecatedBuiltinCode = min(c, 127)
            oc.version = 1
            codes.append(oc)
        m.operatorCodes = codes
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def conv_options(padding, stride, dilation, act):
    o = S.Conv2DOptionsT()
    o.padding = padding
    o.strideH, o.strideW = stride
    o.dilationHFactor, o.dilationWFactor = dilation
    o.fusedActivationFunction = act
    return o


def run_reference(model, inputs):
    interp = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    ind = interp.get_input_details()[0]
    outd = interp.get_output_details()[0]
    outs = []
    for x in inputs:
        interp.set_tensor(ind["index"], x)
        interp.invoke()
        outs.append(interp.get_tensor(outd["index"]).copy())
    return outs


def write(name, model, inputs, out_dir=None):
    outs = run_reference(model, inputs)
    out_dir = out_dir or OUT_DIR
    with open(os.path.join(out_dir, name + ".tflite"), "wb") as f:
        f.write(model)
    ib, ob = inputs[0].nbytes, outs[0].nbytes
    with open(os.path.join(out_dir, name + ".io"), "wb") as f:
        f.write(struct.pack("<III", len(inputs), ib, ob))
        for x, y in zip(inputs, outs):
            f.write(x.tobytes())
            f.write(y.tobytes())
    print(f"{name}: {len(inputs)} samples x {outs[0].size} outputs")


def rand_i8(rng, shape, n):
    return [rng.integers(-128, 128, size=shape, dtype=np.int8) for _ in range(n)]


def conv_model(rng, name, in_shape, oc, k, padding, stride, dilation, act, per_channel, n_samples=3):
    _, _, _, ic = in_shape
    in_scale = float(rng.uniform(0.005, 0.05))
    in_zp = int(rng.integers(-20, 20))
    w = rng.integers(-127, 128, size=(oc, k, k, ic), dtype=np.int8)
    if per_channel:
        w_scale = rng.uniform(0.005, 0.02, size=oc).astype(np.float32)
    else:
        w_scale = np.full(1, rng.uniform(0.005, 0.02), dtype=np.float32)
    bias_scale = in_scale * w_scale
    bias = rng.integers(-20000, 20000, size=oc, dtype=np.int32)
    # Output scale sized so typical accumulators (std ~ 73 * 74 * sqrt(K) for uniform int8 data
    # and weights) land inside int8 without saturating.
    out_scale = float(in_scale * float(np.mean(w_scale)) * np.sqrt(k * k * ic) * 110.0)
    out_zp = int(rng.integers(-30, 30))
    eff = (k - 1) * dilation[0] + 1
    h, wd = in_shape[1], in_shape[2]
    if padding == S.Padding.SAME:
        oh, ow = -(-h // stride[0]), -(-wd // stride[1])
    else:
        oh, ow = (h - eff) // stride[0] + 1, (wd - eff) // stride[1] + 1
    b = Builder()
    x = b.tensor("input", in_shape, S.TensorType.INT8, in_scale, in_zp)
    wt = b.tensor("weights", w.shape, S.TensorType.INT8, w_scale, np.zeros(len(w_scale), np.int64), w)
    bt = b.tensor("bias", [oc], S.TensorType.INT32, bias_scale, np.zeros(len(bias_scale), np.int64), bias)
    y = b.tensor("output", [1, oh, ow, oc], S.TensorType.INT8, out_scale, out_zp)
    b.op(S.BuiltinOperator.CONV_2D, [x, wt, bt], [y], S.BuiltinOptions.Conv2DOptions,
         conv_options(padding, stride, dilation, act))
    write(name, b.finish([x], [y]), rand_i8(rng, in_shape, n_samples))


def fc_model(rng, name, in_shape, out_depth, per_channel, keep_num_dims, act, with_bias, n_samples=4):
    accum = in_shape[-1]
    batches = int(np.prod(in_shape)) // accum
    in_scale = float(rng.uniform(0.005, 0.05))
    in_zp = int(rng.integers(-20, 20))
    w = rng.integers(-127, 128, size=(out_depth, accum), dtype=np.int8)
    n_scales = out_depth if per_channel else 1
    w_scale = rng.uniform(0.005, 0.02, size=n_scales).astype(np.float32)
    out_scale = float(in_scale * float(np.mean(w_scale)) * np.sqrt(accum) * 110.0)
    out_zp = int(rng.integers(-30, 30))
    out_shape = list(in_shape[:-1]) + [out_depth] if keep_num_dims else [batches, out_depth]
    b = Builder()
    x = b.tensor("input", in_shape, S.TensorType.INT8, in_scale, in_zp)
    wt = b.tensor("weights", w.shape, S.TensorType.INT8, w_scale, np.zeros(n_scales, np.int64), w)
    ins = [x, wt]
    if with_bias:
        bias = rng.integers(-20000, 20000, size=out_depth, dtype=np.int32)
        # A per-tensor filter needs a per-tensor bias scale (TFLite checks it against
        # input_scale * filter_scale).
        bscale = in_scale * w_scale
        ins.append(b.tensor("bias", [out_depth], S.TensorType.INT32, bscale, np.zeros(len(bscale), np.int64), bias))
    else:
        ins.append(-1)
    y = b.tensor("output", out_shape, S.TensorType.INT8, out_scale, out_zp)
    o = S.FullyConnectedOptionsT()
    o.fusedActivationFunction = act
    o.keepNumDims = keep_num_dims
    b.op(S.BuiltinOperator.FULLY_CONNECTED, ins, [y], S.BuiltinOptions.FullyConnectedOptions, o)
    write(name, b.finish([x], [y]), rand_i8(rng, in_shape, n_samples))


def ties_model(rng, name, op, n_samples=3):
    """Power-of-two scales and small values so that many accumulators land exactly on a rounding
    tie: this separates TFLite's double rounding (negative halves away from zero after the
    high-mul) from single rounding (halves up), which random scales almost never do."""
    in_scale, w_scale, out_scale = 2.0 ** -4, 2.0 ** -5, 2.0 ** -7  # acc * 2^-2
    b = Builder()
    if op == "fc":
        in_shape, w_shape, out_shape = (8, 64), (24, 64), [8, 24]
    else:
        in_shape, w_shape, out_shape = (1, 6, 6, 8), (12, 3, 3, 8), [1, 6, 6, 12]
    oc = w_shape[0]
    w = rng.integers(-2, 3, size=w_shape, dtype=np.int8)
    x = b.tensor("input", in_shape, S.TensorType.INT8, in_scale, 0)
    wt = b.tensor("weights", w_shape, S.TensorType.INT8, np.float32(w_scale), 0, w)
    bias = rng.integers(-6, 7, size=oc, dtype=np.int32)
    bt = b.tensor("bias", [oc], S.TensorType.INT32, in_scale * w_scale, 0, bias)
    y = b.tensor("output", out_shape, S.TensorType.INT8, out_scale, 0)
    if op == "fc":
        b.op(S.BuiltinOperator.FULLY_CONNECTED, [x, wt, bt], [y], S.BuiltinOptions.FullyConnectedOptions,
             S.FullyConnectedOptionsT())
    else:
        b.op(S.BuiltinOperator.CONV_2D, [x, wt, bt], [y], S.BuiltinOptions.Conv2DOptions,
             conv_options(S.Padding.SAME, (1, 1), (1, 1), S.ActivationFunctionType.NONE))
    xs = [rng.integers(-8, 9, size=in_shape, dtype=np.int8) for _ in range(n_samples)]
    write(name, b.finish([x], [y]), xs)


def quantize_model(rng, name, in_type, in_scale, in_zp, out_scale, out_zp, shape, n_samples=2):
    b = Builder()
    x = b.tensor("input", shape, in_type, in_scale, in_zp)
    y = b.tensor("output", shape, S.TensorType.INT8, out_scale, out_zp)
    b.op(S.BuiltinOperator.QUANTIZE, [x], [y])
    if in_type == S.TensorType.UINT8:
        xs = [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(n_samples)]
    elif in_type == S.TensorType.FLOAT32:
        xs = [rng.normal(0, 2.0, size=shape).astype(np.float32) for _ in range(n_samples)]
    else:
        xs = rand_i8(rng, shape, n_samples)
    write(name, b.finish([x], [y]), xs)


def dequantize_model(rng, name, shape, scale, zp):
    b = Builder()
    x = b.tensor("input", shape, S.TensorType.INT8, scale, zp)
    y = b.tensor("output", shape, S.TensorType.FLOAT32)
    b.op(S.BuiltinOperator.DEQUANTIZE, [x], [y])
    write(name, b.finish([x], [y]), rand_i8(rng, shape, 2))


def mean_model(rng, name, in_shape, axes, keep_dims, same_quant, n_samples=3):
    in_scale = float(rng.uniform(0.01, 0.1))
    in_zp = int(rng.integers(-40, 40))
    if same_quant:
        out_scale, out_zp = in_scale, in_zp
    else:
        out_scale, out_zp = float(in_scale * rng.uniform(0.2, 0.9)), int(rng.integers(-40, 40))
    rank = len(in_shape)
    norm = sorted({a % rank for a in axes})
    out_shape = [1 if d in norm else n for d, n in enumerate(in_shape)] if keep_dims else \
        [n for d, n in enumerate(in_shape) if d not in norm]
    b = Builder()
    x = b.tensor("input", in_shape, S.TensorType.INT8, in_scale, in_zp)
    ax = b.tensor("axes", [len(axes)], S.TensorType.INT32, data=np.array(axes, np.int32))
    y = b.tensor("output", out_shape, S.TensorType.INT8, out_scale, out_zp)
    o = S.ReducerOptionsT()
    o.keepDims = keep_dims
    b.op(S.BuiltinOperator.MEAN, [x, ax], [y], S.BuiltinOptions.ReducerOptions, o)
    write(name, b.finish([x], [y]), rand_i8(rng, in_shape, n_samples))


def pipeline_model(rng, name):
    """uint8 image -> QUANTIZE -> CONV -> CONV(stride 2) -> MEAN -> RESHAPE -> FC -> SQUEEZE ->
    DEQUANTIZE: exercises the planner's reuse of memory across a chain."""
    b = Builder()
    img = b.tensor("image", [1, 12, 12, 3], S.TensorType.UINT8, 1.0 / 255.0, 0)
    q = b.tensor("q", [1, 12, 12, 3], S.TensorType.INT8, 1.0 / 255.0, -128)
    b.op(S.BuiltinOperator.QUANTIZE, [img], [q])
    prev, prev_scale, prev_c, hw = q, 1.0 / 255.0, 3, 12
    for i, (oc, stride) in enumerate([(8, 1), (12, 2)]):
        w = rng.integers(-127, 128, size=(oc, 3, 3, prev_c), dtype=np.int8)
        ws = rng.uniform(0.002, 0.02, size=oc).astype(np.float32)
        out_scale = float(prev_scale * ws.mean() * np.sqrt(9 * prev_c) * 60.0)
        wt = b.tensor(f"w{i}", w.shape, S.TensorType.INT8, ws, np.zeros(oc, np.int64), w)
        bt = b.tensor(f"b{i}", [oc], S.TensorType.INT32, prev_scale * ws, np.zeros(oc, np.int64),
                      rng.integers(-3000, 3000, size=oc, dtype=np.int32))
        hw = -(-hw // stride)
        y = b.tensor(f"conv{i}", [1, hw, hw, oc], S.TensorType.INT8, out_scale, -128)
        b.op(S.BuiltinOperator.CONV_2D, [prev, wt, bt], [y], S.BuiltinOptions.Conv2DOptions,
             conv_options(S.Padding.SAME, (stride, stride), (1, 1), S.ActivationFunctionType.RELU6))
        prev, prev_scale, prev_c = y, out_scale, oc
    ax = b.tensor("axes", [2], S.TensorType.INT32, data=np.array([1, 2], np.int32))
    m = b.tensor("mean", [1, 1, 1, prev_c], S.TensorType.INT8, prev_scale * 0.5, -100)
    o = S.ReducerOptionsT()
    o.keepDims = True
    b.op(S.BuiltinOperator.MEAN, [prev, ax], [m], S.BuiltinOptions.ReducerOptions, o)
    shp = b.tensor("shape", [2], S.TensorType.INT32, data=np.array([1, prev_c], np.int32))
    r = b.tensor("flat", [1, prev_c], S.TensorType.INT8, prev_scale * 0.5, -100)
    ro = S.ReshapeOptionsT()
    ro.newShape = [1, prev_c]
    b.op(S.BuiltinOperator.RESHAPE, [m, shp], [r], S.BuiltinOptions.ReshapeOptions, ro)
    w = rng.integers(-127, 128, size=(5, prev_c), dtype=np.int8)
    ws = np.float32(0.01)
    wt = b.tensor("fc_w", w.shape, S.TensorType.INT8, ws, 0, w)
    logit_scale = float(prev_scale * 0.5 * 0.01 * np.sqrt(prev_c) * 40.0)
    fc = b.tensor("logits", [1, 5], S.TensorType.INT8, logit_scale, 3)
    fo = S.FullyConnectedOptionsT()
    b.op(S.BuiltinOperator.FULLY_CONNECTED, [r, wt, -1], [fc], S.BuiltinOptions.FullyConnectedOptions, fo)
    sq = b.tensor("squeezed", [5], S.TensorType.INT8, logit_scale, 3)
    so = S.SqueezeOptionsT()
    so.squeezeDims = [0]
    b.op(S.BuiltinOperator.SQUEEZE, [fc], [sq], S.BuiltinOptions.SqueezeOptions, so)
    out = b.tensor("probs", [5], S.TensorType.FLOAT32)
    b.op(S.BuiltinOperator.DEQUANTIZE, [sq], [out])
    xs = [rng.integers(0, 256, size=(1, 12, 12, 3), dtype=np.uint8) for _ in range(4)]
    write(name, b.finish([img], [out]), xs)


def external_buffer_model(rng, name):
    """FULLY_CONNECTED whose weights and bias live after the flatbuffer, referenced by
    Buffer.offset/size (the layout converters use for models above 2 GB)."""
    w = rng.integers(-127, 128, size=(6, 16), dtype=np.int8)
    bias = rng.integers(-500, 500, size=6, dtype=np.int32)
    b = Builder()
    x = b.tensor("input", [1, 16], S.TensorType.INT8, 0.02, 3)
    wt = b.tensor("weights", [6, 16], S.TensorType.INT8, 0.01, 0, w)
    bt = b.tensor("bias", [6], S.TensorType.INT32, 0.0002, 0, bias)
    y = b.tensor("output", [1, 6], S.TensorType.INT8, 0.05, -2)
    b.op(S.BuiltinOperator.FULLY_CONNECTED, [x, wt, bt], [y], S.BuiltinOptions.FullyConnectedOptions,
         S.FullyConnectedOptionsT())
    payloads = []
    for i in (1, 2):
        payloads.append(bytes(b.buffers[i].data))
        b.buffers[i].data = None
    # Offsets depend on the flatbuffer's size: pack once with placeholders, then for real.
    for _ in range(2):
        fb_len = len(b.finish([x], [y]))
        at = (fb_len + 15) // 16 * 16
        blob = b""
        for i, p in zip((1, 2), payloads):
            b.buffers[i].offset = at + len(blob)
            b.buffers[i].size = len(p)
            blob += p + b"\0" * (-len(p) % 16)
    model = b.finish([x], [y])
    assert len(model) == fb_len
    model = model + b"\0" * (at - len(model)) + blob
    write(name, model, rand_i8(rng, (1, 16), 3))


def invalid_models(rng):
    os.makedirs(INVALID_DIR, exist_ok=True)
    for f in os.listdir(INVALID_DIR):
        os.remove(os.path.join(INVALID_DIR, f))

    def save(name, model):
        with open(os.path.join(INVALID_DIR, name + ".tflite"), "wb") as f:
            f.write(model)

    # Operator 1 is TANH (opcode 28, version 2): not implemented by kdruntime.
    b = Builder()
    x = b.tensor("x", [1, 4], S.TensorType.INT8, 0.1, 0)
    y = b.tensor("y", [1, 4], S.TensorType.INT8, 0.1, 0)
    z = b.tensor("z", [1, 4], S.TensorType.INT8, 0.1, 0)
    b.op(S.BuiltinOperator.RESHAPE, [x], [y])
    b.op(S.BuiltinOperator.TANH, [y], [z])
    m = b.finish([x], [z])
    model = S.ModelT.InitFromPackedBuf(m, 0)
    model.operatorCodes[1].version = 2
    fb = flatbuffers.Builder(1024)
    fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
    save("unsupported_tanh", bytes(fb.Output()))

    # Operator 0 reads "y", which only operator 1 writes.
    b = Builder()
    x = b.tensor("x", [1, 4], S.TensorType.INT8, 0.1, 0)
    y = b.tensor("y", [1, 4], S.TensorType.INT8, 0.1, 0)
    z = b.tensor("z", [1, 4], S.TensorType.INT8, 0.1, 0)
    b.op(S.BuiltinOperator.RESHAPE, [y], [z])
    b.op(S.BuiltinOperator.RESHAPE, [x], [y])
    save("read_before_write", b.finish([x], [z]))

    # CONV_2D whose bias has 3 entries for 4 output channels.
    b = Builder()
    x = b.tensor("x", [1, 3, 3, 2], S.TensorType.INT8, 0.1, 0)
    w = b.tensor("w", [4, 1, 1, 2], S.TensorType.INT8, 0.1, 0, np.ones((4, 1, 1, 2), np.int8))
    bias = b.tensor("bias", [3], S.TensorType.INT32, 0.01, 0, np.zeros(3, np.int32))
    y = b.tensor("y", [1, 3, 3, 4], S.TensorType.INT8, 0.1, 0)
    b.op(S.BuiltinOperator.CONV_2D, [x, w, bias], [y], S.BuiltinOptions.Conv2DOptions,
         conv_options(S.Padding.SAME, (1, 1), (1, 1), S.ActivationFunctionType.NONE))
    save("conv_bias_length", b.finish([x], [y]))

    # Tensor 1 ("weights") declares [4, 8] int8 but its buffer holds 31 bytes.
    b = Builder()
    x = b.tensor("x", [1, 8], S.TensorType.INT8, 0.1, 0)
    w = b.tensor("weights", [4, 8], S.TensorType.INT8, 0.1, 0, np.ones(31, np.int8))
    y = b.tensor("y", [1, 4], S.TensorType.INT8, 0.1, 0)
    b.op(S.BuiltinOperator.FULLY_CONNECTED, [x, w, -1], [y], S.BuiltinOptions.FullyConnectedOptions,
         S.FullyConnectedOptionsT())
    save("weights_size", b.finish([x], [y]))


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for f in os.listdir(OUT_DIR):
        os.remove(os.path.join(OUT_DIR, f))
    rng = np.random.default_rng(20260524)
    A = S.ActivationFunctionType
    P = S.Padding
    conv_model(rng, "conv_same_s1_pc_none", (1, 9, 9, 6), 10, 3, P.SAME, (1, 1), (1, 1), A.NONE, True)
    conv_model(rng, "conv_same_s2_pc_relu6", (1, 10, 10, 5), 8, 3, P.SAME, (2, 2), (1, 1), A.RELU6, True)
    conv_model(rng, "conv_valid_s1_d2_relu", (1, 9, 9, 4), 7, 3, P.VALID, (1, 1), (2, 2), A.RELU, True)
    conv_model(rng, "conv_valid_s2_pt_none", (1, 11, 11, 3), 6, 3, P.VALID, (2, 2), (1, 1), A.NONE, False)
    conv_model(rng, "conv_same_1x1_pc", (1, 6, 6, 16), 24, 1, P.SAME, (1, 1), (1, 1), A.NONE, True)
    conv_model(rng, "conv_same_s2_d2_5x5", (1, 10, 10, 3), 5, 5, P.SAME, (2, 2), (2, 2), A.RELU, True)
    fc_model(rng, "fc_pt_bias", (1, 64), 32, False, False, A.NONE, True, n_samples=4)
    fc_model(rng, "fc_pc_bias_relu", (4, 48), 40, True, False, A.RELU, True, n_samples=4)
    fc_model(rng, "fc_pt_nobias_keepdims", (2, 3, 40), 24, False, True, A.NONE, False, n_samples=4)
    fc_model(rng, "fc_pc_flatten", (1, 4, 4, 8), 30, True, False, A.RELU6, True, n_samples=4)
    fc_model(rng, "fc_pt_wide", (16, 96), 64, False, False, A.NONE, True, n_samples=2)
    ties_model(rng, "fc_ties_pow2", "fc")
    ties_model(rng, "conv_ties_pow2", "conv")
    quantize_model(rng, "quantize_u8_i8_shift", S.TensorType.UINT8, 1 / 255, 128, 1 / 255, 0, (1, 16, 16, 3))
    quantize_model(rng, "quantize_u8_i8_rescale", S.TensorType.UINT8, 0.0123, 7, 0.0371, -5, (1, 16, 16, 3))
    quantize_model(rng, "quantize_i8_i8", S.TensorType.INT8, 0.05, -3, 0.071, 11, (2, 300))
    quantize_model(rng, "quantize_f32_i8", S.TensorType.FLOAT32, None, None, 0.031, -7, (1, 200))
    dequantize_model(rng, "dequantize_i8", (3, 100), 0.0173, -9)
    mean_model(rng, "mean_spatial_keep", (1, 7, 7, 16), [1, 2], True, False)
    mean_model(rng, "mean_spatial_keep_rev", (2, 5, 6, 8), [2, 1], True, False)
    mean_model(rng, "mean_spatial_nokeep_float", (1, 7, 7, 16), [1, 2], False, False)
    mean_model(rng, "mean_spatial_nokeep_same", (1, 7, 7, 16), [1, 2], False, True)
    mean_model(rng, "mean_negaxes_keep_float", (1, 6, 5, 12), [-3, -2], True, False)
    mean_model(rng, "mean_lastaxis_same", (4, 9, 10), [-1], False, True)
    pipeline_model(rng, "pipeline_u8_classifier")
    external_buffer_model(rng, "fc_external_buffers")
    invalid_models(rng)
    total = sum(os.path.getsize(os.path.join(d, f)) for d in (OUT_DIR, INVALID_DIR) for f in os.listdir(d))
    print(f"total fixture bytes: {total}")
    if total > 100_000:
        sys.exit("fixtures exceed the 100 KB budget")


if __name__ == "__main__":
    main()
