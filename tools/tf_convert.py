#!/usr/bin/env python3
"""Builds Keras networks with random (seeded) weights and converts each with TensorFlow's own
TFLiteConverter to a full-integer model (uint8 input, int8 output), the way a user who never touched
kdtrain would. kdruntime must run these bit-exactly like TFLite's reference kernels
(tests/tests/tf_converter_parity.rs checks it).

Calibration: the sample photos letterboxed (numpy bilinear, black bars; only calibration, so it
need not match kdruntime's letterbox bit for bit) plus flipped and noisy variants and pure noise.

A model whose .tflite already exists is skipped (so a second run is quick), unless this script or
the seed changed since the folder's models were made: the folder's .stamp holds a digest of both.
Run it with the TensorFlow venv: .venv-tf/bin/python tools/tf_convert.py --photos DIR --out DIR
"""

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
import time

import numpy as np

PHOTOS = ("china.jpg", "flower.jpg", "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "retina.jpg")


@contextlib.contextmanager
def quiet(box):
    """Sends what Python and TensorFlow's C++ write to stdout/stderr into box["log"] (the
    converter is chatty), so a successful run prints one line per model."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            box["log"] = tmp.read().decode("utf-8", "replace")


def letterbox(img, size):
    """uint8 HxWx3 -> float32 size x size x 3 in [0, 255]: bilinear (half-pixel centres), centred."""
    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    sy = np.clip((np.arange(nh) + 0.5) * h / nh - 0.5, 0, h - 1)
    sx = np.clip((np.arange(nw) + 0.5) * w / nw - 0.5, 0, w - 1)
    y0 = np.floor(sy).astype(int)
    x0 = np.floor(sx).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (sy - y0)[:, None, None]
    fx = (sx - x0)[None, :, None]
    f = img.astype(np.float32)
    top = f[y0][:, x0] * (1 - fx) + f[y0][:, x1] * fx
    bot = f[y1][:, x0] * (1 - fx) + f[y1][:, x1] * fx
    out = np.zeros((size, size, 3), np.float32)
    t, left = (size - nh) // 2, (size - nw) // 2
    out[t : t + nh, left : left + nw] = top * (1 - fy) + bot * fy
    return out


def load_photos(tf, folder):
    imgs = []
    for name in PHOTOS:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise SystemExit(f"tf_convert: photo {path} missing (run the setup 'data' step)")
        raw = tf.io.read_file(path)
        img = tf.io.decode_image(raw, channels=3, expand_animations=False).numpy()
        imgs.append(img)
    return imgs


def calibration(imgs, size, seed):
    """Float32 [0, 255] samples: every photo, its mirror with noise, and two pure-noise images."""
    rng = np.random.default_rng(seed)
    out = []
    for img in imgs:
        x = letterbox(img, size)
        out.append(x)
        noisy = x[:, ::-1] + rng.normal(0, 12, x.shape).astype(np.float32)
        out.append(np.clip(noisy, 0, 255))
    for _ in range(2):
        out.append(rng.uniform(0, 255, (size, size, 3)).astype(np.float32))
    return out


def calibrate_batchnorm(keras, model, samples, seed):
    """Fresh Keras BatchNorm layers are identities (mean 0, var 1), so random-weight activations
    shrink layer by layer until the converter quantises them with scales near 1e-8 (TFLite's
    SOFTMAX then aborts in Prepare). Like a trained network, give every BatchNorm the statistics
    of its actual input on the calibration images (one training-mode pass with momentum 0) and a
    random per-channel gamma/beta, so activations stay alive and channel ranges differ."""
    rng = np.random.default_rng(seed)
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    for bn in bns:
        gamma, beta, mean, var = bn.get_weights()
        n = gamma.shape
        bn.set_weights(
            [rng.uniform(0.5, 1.5, n).astype(np.float32), rng.normal(0.2, 0.3, n).astype(np.float32), mean, var]
        )
        bn.momentum = 0.0
    model(np.stack(samples), training=True)


def pixels_in(keras, size, scale, offset):
    """A [0, 255] image input rescaled to what the backbone expects (for backbones without
    their own preprocessing), so the uint8 model input carries raw pixels."""
    inp = keras.Input((size, size, 3), name="image")
    return inp, keras.layers.Rescaling(scale, offset=offset)(inp)


def build(keras, name):
    apps = keras.applications
    L = keras.layers
    if name == "mobilenetv2_035_96":
        inp, x = pixels_in(keras, 96, 1 / 127.5, -1.0)
        net = apps.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)
        return keras.Model(inp, net(x), name=name), 96
    if name == "mobilenetv2_100_224":
        inp, x = pixels_in(keras, 224, 1 / 127.5, -1.0)
        net = apps.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None, classes=1000)
        return keras.Model(inp, net(x), name=name), 224
    if name == "efficientnetb0_224":
        # Keras' EfficientNet rescales and normalises [0, 255] pixels itself. Logits out: TFLite's
        # reference int8 SOFTMAX aborts (gemmlowp RoundingDivideByPOT exponent > 31) when the
        # sum of exps over 1000 near-equal logits exceeds 2^8, as random weights give on photos.
        return (
            apps.EfficientNetB0(
                input_shape=(224, 224, 3), weights=None, classes=1000, classifier_activation=None
            ),
            224,
        )
    if name == "mobilenetv3small_224":
        # minimalistic=False: hard-swish and squeeze-excite with hard-sigmoid; own preprocessing.
        # Logits out, as for EfficientNetB0.
        return (
            apps.MobileNetV3Small(
                input_shape=(224, 224, 3),
                alpha=1.0,
                minimalistic=False,
                weights=None,
                classes=1000,
                classifier_activation=None,
            ),
            224,
        )
    if name == "poolconcat_64":
        # Inception-style block: average/max pooling (VALID and SAME), a concatenation of
        # branches with different scales, a padded strided conv, hard-swish and a dense head.
        inp, x = pixels_in(keras, 64, 1 / 255.0, 0.0)
        x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
        a = L.Conv2D(8, 1, activation="relu6")(x)
        b = L.MaxPooling2D(3, strides=1, padding="same")(x)
        b = L.Conv2D(8, 1)(b)
        c = L.AveragePooling2D(3, strides=1, padding="same")(x)
        c = L.Conv2D(8, 3, padding="same", activation="hard_swish")(c)
        d = L.DepthwiseConv2D(3, padding="same")(x)
        x = L.Concatenate()([a, b, c, d])
        x = L.MaxPooling2D(2)(x)
        x = L.AveragePooling2D(2)(x)
        x = L.ZeroPadding2D(((0, 1), (0, 1)))(x)
        x = L.Conv2D(24, 3, strides=2, activation="hard_swish")(x)
        x = L.Add()([x, L.Conv2D(24, 1)(x)])
        x = L.Flatten()(x)
        x = L.Dense(32, activation="relu")(x)
        x = L.Dense(10)(x)
        return keras.Model(inp, x, name=name), 64
    raise ValueError(name)


MODELS = (
    "mobilenetv2_035_96",
    "mobilenetv2_100_224",
    "efficientnetb0_224",
    "mobilenetv3small_224",
    "poolconcat_64",
)


def convert(tf, keras, name, imgs, seed):
    keras.utils.set_random_seed(seed)
    model, size = build(keras, name)
    samples = calibration(imgs, size, seed + 2)
    calibrate_batchnorm(keras, model, samples, seed + 1)

    def representative():
        for s in samples:
            yield [s[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.int8
    return conv.convert()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", required=True, help="folder with the sample photos")
    p.add_argument("--out", required=True, help="folder for <name>.tflite")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--only", nargs="*", choices=MODELS, help="convert only these")
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.abspath(__file__), "rb") as f:
        digest = hashlib.sha256(f.read() + str(a.seed).encode()).hexdigest()
    stamp = os.path.join(a.out, ".stamp")
    if not os.path.isfile(stamp) or open(stamp).read().strip() != digest:
        for m in MODELS:  # made by another version of this script: convert again
            if os.path.isfile(os.path.join(a.out, m + ".tflite")):
                os.remove(os.path.join(a.out, m + ".tflite"))
        with open(stamp, "w") as f:
            f.write(digest + "\n")
    todo = [m for m in (a.only or MODELS) if not os.path.isfile(os.path.join(a.out, m + ".tflite"))]
    if not todo:
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    box = {}
    with quiet(box):  # TensorFlow's import logs its CPU features and oneDNN to stderr
        import tensorflow as tf
        import keras

    imgs = load_photos(tf, a.photos)
    for i, name in enumerate(MODELS):
        if name not in todo:
            continue
        t0 = time.time()
        box = {}
        try:
            with quiet(box):
                blob = convert(tf, keras, name, imgs, a.seed + 100 * i)
        except Exception as e:  # the converter's own message names the op or layer at fault
            print(box.get("log", "")[-4000:], file=sys.stderr)
            print(f"tf_convert: converting {name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        dst = os.path.join(a.out, name + ".tflite")
        with open(dst + ".part", "wb") as f:
            f.write(blob)
        os.replace(dst + ".part", dst)  # never leave a half-written model behind
        print(f"tf_convert: {name}: {len(blob)} bytes in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
