//! Replays the kernel fixtures written by `tools/gen_kernel_fixtures.py` (single-operator int8
//! models run under TFLite's BUILTIN_REF resolver) and requires bit-exact equality.
//! `KD_KERNEL_FIXTURES=DIR` replays a larger sweep from elsewhere.

use std::collections::HashMap;
use std::path::PathBuf;

use kdruntime::kernels::activations::{self, FusedActivation, ReluKind};
use kdruntime::kernels::depthwise_conv::{self, Padding};
use kdruntime::kernels::{add, concatenation, hard_swish, logistic, mul, pad, pooling, softmax};

struct Case {
    id: String,
    fields: HashMap<String, String>,
}

impl Case {
    fn raw(&self, k: &str) -> &str {
        self.fields
            .get(k)
            .unwrap_or_else(|| panic!("{}: missing field {k}", self.id))
    }
    fn ints(&self, k: &str) -> Vec<i64> {
        self.raw(k)
            .split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect()
    }
    fn dims(&self, k: &str) -> Vec<usize> {
        self.ints(k).into_iter().map(|v| v as usize).collect()
    }
    fn dims4(&self, k: &str) -> [usize; 4] {
        self.dims(k).try_into().unwrap()
    }
    fn int(&self, k: &str) -> i64 {
        self.ints(k)[0]
    }
    fn floats(&self, k: &str) -> Vec<f32> {
        self.raw(k)
            .split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect()
    }
    /// `(scale, zero point)`.
    fn q(&self, k: &str) -> (f32, i32) {
        let t: Vec<&str> = self.raw(k).split_whitespace().collect();
        (t[0].parse().unwrap(), t[1].parse().unwrap())
    }
    fn hex(&self, k: &str) -> Vec<i8> {
        let s = self
            .fields
            .get(&format!("{k}.hex"))
            .map(String::as_str)
            .unwrap_or("");
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap() as i8)
            .collect()
    }
    fn act(&self) -> FusedActivation {
        FusedActivation::from_schema(self.int("activation") as i8).unwrap()
    }
}

fn load(op: &str) -> Vec<Case> {
    let dir = std::env::var_os("KD_KERNEL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kernels")
        });
    let text = std::fs::read_to_string(dir.join(format!("{op}.txt")))
        .unwrap_or_else(|e| panic!("{op}: {e}"));
    let mut cases = Vec::new();
    let mut cur: Option<Case> = None;
    for line in text.lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        match k {
            "case" => {
                cur = Some(Case {
                    id: v.to_string(),
                    fields: HashMap::new(),
                })
            }
            "end" => cases.push(cur.take().expect("end without case")),
            _ => {
                cur.as_mut()
                    .expect("field outside a case")
                    .fields
                    .insert(k.to_string(), v.to_string());
            }
        }
    }
    assert!(!cases.is_empty(), "{op}: no cases");
    cases
}

/// Runs `f` on every case of `op`, compares with the stored outputs, prints the count.
fn check(op: &str, f: impl Fn(&Case) -> Vec<i8>) {
    let cases = load(op);
    let (mut compared, mut bad) = (0usize, 0usize);
    for c in &cases {
        let want = c.hex("out");
        let got = f(c);
        assert_eq!(got.len(), want.len(), "{}: output length", c.id);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if g != w {
                if bad < 10 {
                    eprintln!("{}: element {i}: got {g}, TFLite {w}", c.id);
                }
                bad += 1;
            }
        }
        compared += want.len();
    }
    println!(
        "{op}: {} cases, {compared} output values compared, {bad} mismatches",
        cases.len()
    );
    assert_eq!(
        bad, 0,
        "{op}: {bad} of {compared} values differ from TFLite"
    );
}

#[test]
fn depthwise_conv_matches_tflite() {
    check("depthwise_conv", |c| {
        let (is, iz) = c.q("input_q");
        let (os, oz) = c.q("output_q");
        let st = c.dims("stride");
        let di = c.dims("dilation");
        let p = depthwise_conv::prepare(
            c.dims4("input_shape"),
            c.dims4("filter_shape"),
            c.dims4("output_shape"),
            [st[0], st[1]],
            [di[0], di[1]],
            Padding::from_schema(c.int("padding") as i8).unwrap(),
            c.int("depth_multiplier") as usize,
            c.act(),
            is,
            iz,
            os,
            oz,
        )
        .unwrap();
        let mults: Vec<_> = c
            .floats("filter_scales")
            .iter()
            .map(|&fs| depthwise_conv::prepare_channel(is, fs, os))
            .collect();
        let bias: Vec<i32> = c.ints("bias").into_iter().map(|v| v as i32).collect();
        let mut out = vec![0i8; c.dims("output_shape").iter().product()];
        depthwise_conv::eval(&p, &mults, &c.hex("in0"), &c.hex("filter"), &bias, &mut out);
        out
    });
}

fn binary(c: &Case, is_add: bool) -> Vec<i8> {
    let (sa, za) = c.q("a_q");
    let (sb, zb) = c.q("b_q");
    let (so, zo) = c.q("output_q");
    let (a_shape, b_shape, o_shape) =
        (c.dims("a_shape"), c.dims("b_shape"), c.dims("output_shape"));
    let mut out = vec![0i8; o_shape.iter().product()];
    if is_add {
        let p = add::prepare(
            sa,
            za,
            sb,
            zb,
            so,
            zo,
            c.act(),
            &a_shape,
            &b_shape,
            &o_shape,
        )
        .unwrap();
        add::eval(&p, &c.hex("in0"), &c.hex("in1"), &mut out);
    } else {
        let p = mul::prepare(
            sa,
            za,
            sb,
            zb,
            so,
            zo,
            c.act(),
            &a_shape,
            &b_shape,
            &o_shape,
        )
        .unwrap();
        mul::eval(&p, &c.hex("in0"), &c.hex("in1"), &mut out);
    }
    out
}

#[test]
fn add_matches_tflite() {
    check("add", |c| binary(c, true));
}

#[test]
fn mul_matches_tflite() {
    check("mul", |c| binary(c, false));
}

fn relu(c: &Case, kind: ReluKind) -> Vec<i8> {
    let (is, iz) = c.q("input_q");
    let (os, oz) = c.q("output_q");
    let p = activations::prepare_relu(kind, is, iz, os, oz).unwrap();
    let x = c.hex("in0");
    let mut out = vec![0i8; x.len()];
    activations::eval_relu(&p, &x, &mut out);
    out
}

#[test]
fn relu_matches_tflite() {
    check("relu", |c| relu(c, ReluKind::Relu));
}

#[test]
fn relu6_matches_tflite() {
    check("relu6", |c| relu(c, ReluKind::Relu6));
}

fn pool(c: &Case, kind: pooling::PoolKind) -> Vec<i8> {
    let (os, oz) = c.q("output_q");
    let f = c.dims("filter");
    let st = c.dims("stride");
    let p = pooling::prepare(
        kind,
        c.dims4("input_shape"),
        c.dims4("output_shape"),
        [f[0], f[1]],
        [st[0], st[1]],
        Padding::from_schema(c.int("padding") as i8).unwrap(),
        c.act(),
        os,
        oz,
    )
    .unwrap();
    let mut out = vec![0i8; c.dims("output_shape").iter().product()];
    pooling::eval(&p, &c.hex("in0"), &mut out);
    out
}

#[test]
fn average_pool_matches_tflite() {
    check("average_pool", |c| pool(c, pooling::PoolKind::Average));
}

#[test]
fn max_pool_matches_tflite() {
    check("max_pool", |c| pool(c, pooling::PoolKind::Max));
}

#[test]
fn pad_matches_tflite() {
    check("pad", |c| {
        let (_, z) = c.q("q");
        let paddings: Vec<i32> = c.ints("paddings").into_iter().map(|v| v as i32).collect();
        let p = pad::prepare(
            &c.dims("input_shape"),
            &paddings,
            &c.dims("output_shape"),
            z,
        )
        .unwrap();
        let mut out = vec![0i8; c.dims("output_shape").iter().product()];
        pad::eval(&p, &c.hex("in0"), &mut out);
        out
    });
}

#[test]
fn concatenation_matches_tflite() {
    check("concatenation", |c| {
        let q = c.q("q");
        let k = c.int("count") as usize;
        let shapes: Vec<Vec<usize>> = (0..k).map(|i| c.dims(&format!("shape{i}"))).collect();
        let shape_refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let data: Vec<Vec<i8>> = (0..k).map(|i| c.hex(&format!("in{i}"))).collect();
        let data_refs: Vec<&[i8]> = data.iter().map(Vec::as_slice).collect();
        let p = concatenation::prepare(
            &shape_refs,
            &vec![q; k],
            &c.dims("output_shape"),
            q,
            c.int("axis") as i32,
        )
        .unwrap();
        let mut out = vec![0i8; c.dims("output_shape").iter().product()];
        concatenation::eval(&p, &data_refs, &mut out);
        out
    });
}

#[test]
fn softmax_matches_tflite() {
    check("softmax", |c| {
        let (is, _) = c.q("input_q");
        let (os, oz) = c.q("output_q");
        let p = softmax::prepare(is, c.floats("beta")[0], os, oz, &c.dims("shape")).unwrap();
        let x = c.hex("in0");
        let mut out = vec![0i8; x.len()];
        softmax::eval(&p, &x, &mut out);
        out
    });
}

#[test]
fn logistic_matches_tflite() {
    check("logistic", |c| {
        let (is, iz) = c.q("input_q");
        let (os, oz) = c.q("output_q");
        let p = logistic::prepare(is, iz, os, oz).unwrap();
        let x = c.hex("in0");
        let mut out = vec![0i8; x.len()];
        logistic::eval(&p, &x, &mut out);
        out
    });
}

#[test]
fn hard_swish_matches_tflite() {
    check("hard_swish", |c| {
        let (is, iz) = c.q("input_q");
        let (os, oz) = c.q("output_q");
        let p = hard_swish::prepare(is, iz, os, oz).unwrap();
        let x = c.hex("in0");
        let mut out = vec![0i8; x.len()];
        hard_swish::eval(&p, &x, &mut out);
        out
    });
}
