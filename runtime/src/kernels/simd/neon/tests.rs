//! The NEON kernels against the reference kernels on random shapes and values (both
//! instruction sets the CPU has: `scripts/arm-test.sh` runs these under QEMU once with a CPU
//! that has FEAT_DotProd and once with one that has not), plus the fallbacks.

use super::requant::Requant;
use super::*;
use crate::kernels::depthwise_conv::{self, Padding};
use crate::kernels::{activations::FusedActivation, conv, fully_connected, simd};
use crate::quant::{multiply_by_quantized_multiplier, QuantizedMultiplier};
use crate::tflite::schema::{activation, padding};
use core::arch::aarch64::*;
use std::vec;
use std::vec::Vec;

/// SplitMix64: small, deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// int8 data: uniform, or (one case in eight) only the extremes -128 and 127.
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        let extremes = self.below(8) == 0;
        (0..n)
            .map(|_| {
                if extremes {
                    self.pick(&[-128i8, 127])
                } else {
                    self.next() as i8
                }
            })
            .collect()
    }
    /// A zero point: the extremes, zero, or uniform.
    fn zero_point(&mut self) -> i32 {
        match self.below(4) {
            0 => -128,
            1 => 127,
            2 => 0,
            _ => self.range(-128, 127) as i32,
        }
    }
    /// Per-channel (multiplier, shift) for a real scale around `1 / typical accumulator`,
    /// now and then above 1 (left shifts) or exactly 0.5 (rounding ties).
    fn multipliers(&mut self, n: usize, k: usize) -> (Vec<i32>, Vec<i32>) {
        let per_tensor = self.below(3) == 0;
        let mut first = None;
        (0..n)
            .map(|_| {
                let real = match self.below(10) {
                    0 => 0.5,
                    1 => 1.0 + 3.0 * self.unit(),
                    _ => (1.0 + self.unit()) / (k as f64 * (16.0 + 2000.0 * self.unit())),
                };
                let q = QuantizedMultiplier::from_f64(real);
                if per_tensor {
                    *first.get_or_insert((q.multiplier, q.shift))
                } else {
                    (q.multiplier, q.shift)
                }
            })
            .unzip()
    }
    /// Little-endian int32 bias bytes (None one time in four), sometimes at the int32 extremes.
    fn bias(&mut self, n: usize) -> Option<Vec<u8>> {
        if self.below(4) == 0 {
            return None;
        }
        let wide = self.below(6) == 0;
        Some(
            (0..n)
                .flat_map(|_| {
                    let b = if wide {
                        self.pick(&[i32::MIN, i32::MAX, i32::MIN + 5, i32::MAX - 5])
                    } else {
                        self.range(-40_000, 40_000) as i32
                    };
                    b.to_le_bytes()
                })
                .collect(),
        )
    }
    /// Some clamp range inside int8, or the prepared one.
    fn clamp(&mut self, prepared: (i32, i32)) -> (i32, i32) {
        if self.below(3) == 0 {
            let lo = self.range(-128, 60) as i32;
            (lo, self.range(lo as i64, 127) as i32)
        } else {
            prepared
        }
    }
}

fn isas() -> Vec<Isa> {
    [Isa::Neon, Isa::DotProd]
        .into_iter()
        .filter(|i| i.available())
        .collect()
}

#[test]
fn dotprod_detection_matches_the_emulated_cpu() {
    // scripts/arm-test.sh says which QEMU CPU it runs on; without the variable nothing is known.
    if let Ok(v) = std::env::var("KDRUNTIME_EXPECT_DOTPROD") {
        assert_eq!(
            Isa::DotProd.available(),
            v == "1",
            "KDRUNTIME_EXPECT_DOTPROD={v}"
        );
        assert_eq!(Isa::best() == Isa::DotProd, v == "1");
    }
}

#[test]
fn requant_matches_multiply_by_quantized_multiplier() {
    let mut rng = Rng(1);
    let xs = [
        0,
        1,
        -1,
        2,
        -2,
        3,
        -3,
        i32::MIN,
        i32::MIN + 1,
        i32::MAX,
        i32::MAX - 1,
        1 << 30,
        -(1 << 30),
        (1 << 30) + 1,
        -(1 << 30) - 1,
        12_345,
        -12_345,
    ];
    let ms = [0, 1 << 30, (1 << 30) + 1, i32::MAX, i32::MIN, 1_518_500_250];
    let shifts = [
        i32::MIN,
        -40,
        -32,
        -31,
        -30,
        -17,
        -2,
        -1,
        0,
        1,
        2,
        17,
        30,
        31,
        32,
        i32::MAX,
    ];
    let mut lanes = 0;
    let mut check = |x: [i32; 4], m: [i32; 4], s: [i32; 4]| unsafe {
        let mut got = [0i32; 4];
        let rq = Requant::load(m.as_ptr(), s.as_ptr());
        vst1q_s32(got.as_mut_ptr(), rq.apply(vld1q_s32(x.as_ptr())));
        for i in 0..4 {
            let want = multiply_by_quantized_multiplier(x[i], m[i], s[i]);
            assert_eq!(got[i], want, "x {} m {} shift {}", x[i], m[i], s[i]);
        }
        lanes += 4;
    };
    for &m in &ms {
        for &s in &shifts {
            for x in xs.chunks(4) {
                let mut v = [x[0]; 4];
                v[..x.len()].copy_from_slice(x);
                check(v, [m; 4], [s; 4]);
            }
        }
    }
    // Exact ties: multiplier 0.5 (2^30) and small right shifts on small values.
    for x in -200..200 {
        check([x, -x, x + 1, -x - 1], [1 << 30; 4], [0, -1, -2, -3]);
    }
    for _ in 0..50_000 {
        let x = [0; 4].map(|_| match rng.below(3) {
            0 => rng.next() as i32,
            1 => rng.range(-100_000, 100_000) as i32,
            _ => rng.range(-300, 300) as i32,
        });
        let m = [0; 4].map(|_| rng.range(1 << 30, i32::MAX as i64) as i32);
        let s = [0; 4].map(|_| rng.range(-31, 8) as i32);
        check(x, m, s);
    }
    assert!(lanes > 200_000);
}

struct ConvCase {
    p: conv::ConvParams,
    mult: Vec<i32>,
    shift: Vec<i32>,
    input: Vec<i8>,
    filter: Vec<i8>,
    bias: Option<Vec<u8>>,
}

impl ConvCase {
    fn reference(&self) -> Vec<i8> {
        let mut out = vec![0i8; self.out_len()];
        conv::eval(
            &self.p,
            &self.mult,
            &self.shift,
            &self.input,
            &self.filter,
            self.bias.as_deref(),
            &mut out,
        );
        out
    }
    fn out_len(&self) -> usize {
        self.p.batches * self.p.out_h * self.p.out_w * self.p.out_c
    }
    /// The NEON result, or None when the kernel left the call to the reference.
    fn neon(&self, isa: Isa) -> Option<Vec<i8>> {
        let mut out = vec![0x55i8; self.out_len()];
        let b = self.bias.as_deref();
        let (p, m, s) = (&self.p, &self.mult, &self.shift);
        conv_with(isa, p, m, s, &self.input, &self.filter, b, &mut out).then_some(out)
    }
}

/// A random convolution: `kind` 0 = 1x1 stride 1, 1 = 1x1 strided, 2 = 3x3, 3 = 5x5, 4 = any
/// filter up to 4x4 (non-square), with random stride, dilation, padding, channel counts, zero
/// points, multipliers, bias and clamp.
fn random_conv(rng: &mut Rng, kind: usize) -> ConvCase {
    loop {
        let (fh, fw) = match kind {
            0 | 1 => (1, 1),
            2 => (3, 3),
            3 => (5, 5),
            _ => (rng.range(1, 4) as usize, rng.range(1, 4) as usize),
        };
        let stride = match kind {
            0 => (1, 1),
            1 => (2, rng.range(1, 3) as i32),
            _ => (rng.range(1, 2) as i32, rng.range(1, 3) as i32),
        };
        let dilation = if kind >= 2 && rng.below(4) == 0 {
            (rng.range(1, 2) as i32, 2)
        } else {
            (1, 1)
        };
        let pad = rng.pick(&[padding::SAME, padding::VALID]);
        let in_c = rng.pick(&[1, 2, 3, 4, 7, 8, 15, 16, 17, 24, 31, 32, 33, 40, 64, 65]);
        let out_c = rng.pick(&[1, 2, 3, 4, 5, 7, 8, 9, 16, 17]);
        let (batches, in_h, in_w) = (
            rng.range(1, 2) as usize,
            rng.range(1, 9) as usize,
            rng.range(1, 9) as usize,
        );
        let (sh, sw) = (stride.0 as usize, stride.1 as usize);
        let (dh, dw) = (dilation.0 as usize, dilation.1 as usize);
        let (Some(oh), Some(ow)) = (
            conv::out_size(pad, in_h, fh, sh, dh),
            conv::out_size(pad, in_w, fw, sw, dw),
        ) else {
            continue;
        };
        if oh == 0 || ow == 0 {
            continue;
        }
        let spec = conv::ConvSpec {
            input: [batches, in_h, in_w, in_c],
            filter: [out_c, fh, fw, in_c],
            output: [batches, oh, ow, out_c],
            stride,
            dilation,
            padding: pad,
            activation: rng.pick(&[activation::NONE, activation::RELU, activation::RELU6]),
            input_zero_point: rng.zero_point() as i64,
            output_zero_point: rng.zero_point() as i64,
            output_scale: 0.02 + rng.unit() as f32,
        };
        let mut p = conv::prepare(&spec).expect("generated a valid convolution");
        (p.act_min, p.act_max) = rng.clamp((p.act_min, p.act_max));
        let k = fh * fw * in_c;
        let (mult, shift) = rng.multipliers(out_c, k);
        return ConvCase {
            p,
            mult,
            shift,
            input: rng.i8s(batches * in_h * in_w * in_c),
            filter: rng.i8s(out_c * k),
            bias: rng.bias(out_c),
        };
    }
}

#[test]
fn conv_matches_reference_on_random_shapes() {
    let mut rng = Rng(2);
    let mut seen = [0usize; 5];
    for case in 0..400 {
        let kind = case % 5;
        let c = random_conv(&mut rng, kind);
        let want = c.reference();
        for isa in isas() {
            let got = c
                .neon(isa)
                .unwrap_or_else(|| panic!("case {case} not handled: {:?}", c.p));
            assert_eq!(got, want, "case {case} ({isa:?}): {:?}", c.p);
        }
        seen[kind] += 1;
    }
    assert_eq!(seen, [80; 5]);
}

#[test]
fn conv_through_the_dispatcher() {
    let mut rng = Rng(3);
    for kind in 0..5 {
        let c = random_conv(&mut rng, kind);
        let mut out = vec![0x55i8; c.out_len()];
        let b = c.bias.as_deref();
        assert!(simd::try_conv(
            &c.p, &c.mult, &c.shift, &c.input, &c.filter, b, &mut out
        ));
        assert_eq!(out, c.reference(), "{:?}", c.p);
    }
}

#[test]
fn conv_extreme_accumulators() {
    // All products at their largest: (x + 127) = -255 times -128 over K = 3600 taps (the panel's
    // limit is 4096), and a 1x1 with 70000 input channels whose sum wraps around int32 as the
    // reference's wrapping_add does (70000 * 255 * 128 > 2^31).
    let mut rng = Rng(4);
    for (filter_hw, in_c, out_c) in [(3, 400, 3), (1, 70_000, 2)] {
        let spec = conv::ConvSpec {
            input: [1, filter_hw, filter_hw, in_c],
            filter: [out_c, filter_hw, filter_hw, in_c],
            output: [1, 1, 1, out_c],
            stride: (1, 1),
            dilation: (1, 1),
            padding: padding::VALID,
            activation: activation::NONE,
            input_zero_point: 127,
            output_zero_point: -3,
            output_scale: 1.0,
        };
        let p = conv::prepare(&spec).unwrap();
        let k = filter_hw * filter_hw * in_c;
        let mut filter = vec![-128i8; out_c * k];
        filter[k..].iter_mut().for_each(|w| *w = rng.next() as i8);
        let c = ConvCase {
            p,
            mult: vec![1 << 30; out_c],
            shift: vec![-20; out_c],
            input: vec![-128; k],
            filter,
            bias: None,
        };
        let want = c.reference();
        for isa in isas() {
            assert_eq!(c.neon(isa).expect("handled"), want, "{isa:?} {:?}", c.p);
        }
    }
}

#[test]
fn conv_leaves_oversized_panels_to_the_reference() {
    // 3x3 x 600 channels = 5400 bytes per im2col row: over MAX_PANEL / 4.
    let mut rng = Rng(5);
    let spec = conv::ConvSpec {
        input: [1, 3, 3, 600],
        filter: [2, 3, 3, 600],
        output: [1, 1, 1, 2],
        stride: (1, 1),
        dilation: (1, 1),
        padding: padding::VALID,
        activation: activation::NONE,
        input_zero_point: 0,
        output_zero_point: 0,
        output_scale: 1.0,
    };
    let p = conv::prepare(&spec).unwrap();
    assert!(9 * 600 > super::conv::MAX_PANEL / 4);
    let (input, filter) = (rng.i8s(9 * 600), rng.i8s(2 * 9 * 600));
    let mut out = [0i8; 2];
    assert!(!conv_with(
        Isa::Neon,
        &p,
        &[1 << 30; 2],
        &[-8; 2],
        &input,
        &filter,
        None,
        &mut out
    ));
    // A short input slice or a missing multiplier is left to the reference as well.
    let p1 = conv::ConvParams {
        filter_h: 1,
        filter_w: 1,
        in_h: 1,
        in_w: 1,
        ..p
    };
    assert!(!conv_with(
        Isa::Neon,
        &p1,
        &[1 << 30; 2],
        &[-8; 2],
        &input[..599],
        &filter,
        None,
        &mut out
    ));
    assert!(!conv_with(
        Isa::Neon,
        &p1,
        &[1 << 30; 1],
        &[-8; 2],
        &input,
        &filter,
        None,
        &mut out
    ));
    assert!(conv_with(
        Isa::Neon,
        &p1,
        &[1 << 30; 2],
        &[-8; 2],
        &input,
        &filter,
        None,
        &mut out
    ));
}

struct DwCase {
    p: depthwise_conv::DepthwiseConvParams,
    mult: Vec<i32>,
    shift: Vec<i32>,
    input: Vec<i8>,
    filter: Vec<i8>,
    bias: Option<Vec<u8>>,
}

impl DwCase {
    fn out_len(&self) -> usize {
        self.p.output_shape.iter().product()
    }
    fn reference(&self) -> Vec<i8> {
        let mut out = vec![0i8; self.out_len()];
        let (p, m, s, b) = (&self.p, &self.mult, &self.shift, self.bias.as_deref());
        depthwise_conv::eval_split(p, m, s, &self.input, &self.filter, b, &mut out);
        out
    }
    fn neon(&self) -> Option<Vec<i8>> {
        let mut out = vec![0x55i8; self.out_len()];
        let (p, m, s, b) = (&self.p, &self.mult, &self.shift, self.bias.as_deref());
        depthwise(p, m, s, &self.input, &self.filter, b, &mut out).then_some(out)
    }
}

/// A random depthwise convolution: `kind` 0 = 3x3, 1 = 5x5, 2 = any filter up to 7x7.
fn random_depthwise(rng: &mut Rng, kind: usize, depth_multiplier: usize) -> DwCase {
    loop {
        let (kh, kw) = match kind {
            0 => (3, 3),
            1 => (5, 5),
            _ => (rng.range(1, 7) as usize, rng.range(1, 7) as usize),
        };
        let c = if rng.below(4) == 0 {
            rng.pick(&[48, 64, 96, 144])
        } else {
            rng.range(1, 40) as usize
        };
        let oc = c * depth_multiplier;
        let stride = [rng.range(1, 2) as usize, rng.range(1, 3) as usize];
        let dilation = if rng.below(4) == 0 {
            [rng.range(1, 2) as usize, 2]
        } else {
            [1, 1]
        };
        let pad = rng.pick(&[Padding::Same, Padding::Valid]);
        let (n, h, w) = (
            rng.range(1, 2) as usize,
            rng.range(1, 10) as usize,
            rng.range(1, 10) as usize,
        );
        let (Some((oh, _)), Some((ow, _))) = (
            depthwise_conv::out_size_and_padding(pad, h, kh, stride[0], dilation[0]),
            depthwise_conv::out_size_and_padding(pad, w, kw, stride[1], dilation[1]),
        ) else {
            continue;
        };
        let act = rng.pick(&[
            FusedActivation::None,
            FusedActivation::Relu,
            FusedActivation::Relu6,
        ]);
        let mut p = depthwise_conv::prepare(
            [n, h, w, c],
            [1, kh, kw, oc],
            [n, oh, ow, oc],
            stride,
            dilation,
            pad,
            depth_multiplier,
            act,
            0.05,
            rng.zero_point(),
            0.02 + rng.unit() as f32,
            rng.zero_point(),
        )
        .expect("generated a valid depthwise convolution");
        (p.act_min, p.act_max) = rng.clamp((p.act_min, p.act_max));
        let (mult, shift) = rng.multipliers(oc, kh * kw);
        return DwCase {
            p,
            mult,
            shift,
            input: rng.i8s(n * h * w * c),
            filter: rng.i8s(kh * kw * oc),
            bias: rng.bias(oc),
        };
    }
}

#[test]
fn depthwise_matches_reference_on_random_shapes() {
    let mut rng = Rng(6);
    for case in 0..300 {
        let c = random_depthwise(&mut rng, case % 3, 1);
        let got = c
            .neon()
            .unwrap_or_else(|| panic!("case {case} not handled: {:?}", c.p));
        assert_eq!(got, c.reference(), "case {case}: {:?}", c.p);
    }
}

#[test]
fn depthwise_through_the_dispatcher_and_its_fallbacks() {
    let mut rng = Rng(7);
    for kind in 0..3 {
        let c = random_depthwise(&mut rng, kind, 1);
        let mut out = vec![0x55i8; c.out_len()];
        let (p, m, s, b) = (&c.p, &c.mult, &c.shift, c.bias.as_deref());
        assert!(simd::try_depthwise(
            p, m, s, &c.input, &c.filter, b, &mut out
        ));
        assert_eq!(out, c.reference(), "{:?}", c.p);
    }
    // Depth multiplier 2 and filters over MAX_TAPS taps stay with the reference kernel.
    let c = random_depthwise(&mut rng, 0, 2);
    assert!(c.neon().is_none());
    let mut c = random_depthwise(&mut rng, 0, 1);
    assert!(c.neon().is_some());
    c.mult.pop();
    assert!(c.neon().is_none(), "a multiplier short");
    let mut c = random_depthwise(&mut rng, 2, 1);
    c.p.filter_shape[1] = 9;
    c.p.filter_shape[2] = 8;
    assert!(9 * 8 > depthwise::MAX_TAPS);
    assert!(c.neon().is_none());
}

struct FcCase {
    p: fully_connected::FcParams,
    scales: Vec<f64>,
    input: Vec<i8>,
    filter: Vec<i8>,
    bias: Option<Vec<u8>>,
}

impl FcCase {
    fn out_len(&self) -> usize {
        self.p.batches * self.p.out_depth
    }
    fn reference(&self) -> Vec<i8> {
        let mut out = vec![0i8; self.out_len()];
        let b = self.bias.as_deref();
        fully_connected::eval(
            &self.p,
            &self.scales,
            &self.input,
            &self.filter,
            b,
            &mut out,
        );
        out
    }
    fn neon(&self, isa: Isa) -> Option<Vec<i8>> {
        let mut out = vec![0x55i8; self.out_len()];
        let (p, s, b) = (&self.p, &self.scales, self.bias.as_deref());
        fully_connected_with(isa, p, s, &self.input, &self.filter, b, &mut out).then_some(out)
    }
}

fn random_fc(rng: &mut Rng) -> FcCase {
    let batches = rng.range(1, 9) as usize;
    let k = if rng.below(3) == 0 {
        rng.pick(&[64, 100, 255, 256, 1000, 1280])
    } else {
        rng.range(1, 40) as usize
    };
    let out = rng.range(1, 13) as usize;
    let dims = [batches as i32, out as i32];
    let spec = fully_connected::FcSpec {
        input_elements: batches * k,
        filter: [out, k],
        input_dims: &[batches as i32, k as i32],
        output_dims: &dims,
        keep_num_dims: false,
        activation: rng.pick(&[activation::NONE, activation::RELU, activation::RELU6]),
        input_zero_point: rng.zero_point() as i64,
        output_zero_point: rng.zero_point() as i64,
        output_scale: 0.02 + rng.unit() as f32,
    };
    let mut p = fully_connected::prepare(&spec).expect("generated a valid layer");
    (p.act_min, p.act_max) = rng.clamp((p.act_min, p.act_max));
    let per_tensor = rng.below(2) == 0;
    let first = 1.0 / (k as f64 * (16.0 + 2000.0 * rng.unit()));
    let scales = (0..out)
        .map(|_| match rng.below(8) {
            _ if per_tensor => first,
            0 => 0.25, // ties
            _ => 1.0 / (k as f64 * (16.0 + 2000.0 * rng.unit())),
        })
        .collect();
    FcCase {
        p,
        scales,
        input: rng.i8s(batches * k),
        filter: rng.i8s(out * k),
        bias: rng.bias(out),
    }
}

#[test]
fn fully_connected_matches_reference_on_random_shapes() {
    let mut rng = Rng(8);
    for case in 0..300 {
        let c = random_fc(&mut rng);
        let want = c.reference();
        for isa in isas() {
            let got = c
                .neon(isa)
                .unwrap_or_else(|| panic!("case {case} not handled: {:?}", c.p));
            assert_eq!(got, want, "case {case} ({isa:?}): {:?}", c.p);
        }
    }
}

#[test]
fn fully_connected_through_the_dispatcher_and_its_fallbacks() {
    let mut rng = Rng(9);
    let c = random_fc(&mut rng);
    let mut out = vec![0x55i8; c.out_len()];
    let (p, s, b) = (&c.p, &c.scales, c.bias.as_deref());
    assert!(simd::try_fully_connected(
        p, s, &c.input, &c.filter, b, &mut out
    ));
    assert_eq!(out, c.reference(), "{:?}", c.p);
    // A scale short, or a short input: the reference handles (or stops on) those.
    let mut short = random_fc(&mut rng);
    short.scales.pop();
    assert!(short.neon(Isa::Neon).is_none(), "a scale short");
    let mut short = random_fc(&mut rng);
    short.input.pop();
    assert!(short.neon(Isa::Neon).is_none(), "an input byte short");
}

#[test]
fn output_zero_point_overflow_as_the_reference() {
    // Requantised values next to the int32 limits: CONV_2D adds the output zero point with
    // saturation, DEPTHWISE_CONV_2D with wrapping (as their reference kernels do).
    let mut rng = Rng(10);
    for (i, edge) in [i32::MAX - 40, i32::MIN + 40].into_iter().enumerate() {
        let zp = if i == 0 { 120 } else { -120 };
        let mut c = random_conv(&mut rng, 2);
        let n = c.p.out_c;
        (c.mult, c.shift, c.p.output_offset) = (vec![i32::MAX; n], vec![0; n], zp);
        c.bias = Some((0..n).flat_map(|_| edge.to_le_bytes()).collect());
        c.filter.iter_mut().for_each(|w| *w = 0);
        let want = c.reference();
        let saturated = if i == 0 { c.p.act_max } else { c.p.act_min };
        assert!(want.iter().all(|&v| i32::from(v) == saturated), "{want:?}");
        for isa in isas() {
            assert_eq!(c.neon(isa).expect("handled"), want, "{isa:?} {:?}", c.p);
        }
        let mut d = random_depthwise(&mut rng, 0, 1);
        let n = d.p.filter_shape[3];
        (d.mult, d.shift, d.p.output_zero_point) = (vec![i32::MAX; n], vec![0; n], zp);
        (d.p.act_min, d.p.act_max) = (-128, 127);
        d.bias = Some((0..n).flat_map(|_| edge.to_le_bytes()).collect());
        d.filter.iter_mut().for_each(|w| *w = 0);
        let want = d.reference();
        // Wrapped past the limit: the clamp sends it to the opposite end.
        let wrapped = if i == 0 { -128 } else { 127 };
        assert!(want.iter().all(|&v| v == wrapped), "{want:?}");
        assert_eq!(d.neon().expect("handled"), want, "{:?}", d.p);
    }
}
