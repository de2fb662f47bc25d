//! Every x86 kernel against the reference kernel it replaces, on random shapes, quantisation
//! and data, on each level this CPU has, over the whole output and over pixel sub-ranges (the
//! parts threads compute). Shapes cover 1x1 / 3x3 / 5x5 / strided / dilated / SAME and VALID /
//! channel counts off the vector width / extreme zero points / per-channel multipliers with
//! left shifts / no bias.

use std::vec;
use std::vec::Vec;

use super::*;
use crate::kernels::activations::FusedActivation;
use crate::kernels::depthwise_conv::{self, Padding};
use crate::kernels::simd::conv_pixels;
use crate::kernels::simd::test_rng::Rng;
use crate::kernels::{add, conv, fully_connected};
use crate::quant::QuantizedMultiplier;
use crate::tflite::schema::{activation, padding};

fn levels() -> Vec<Level> {
    [Level::Avx2, Level::Avx512Vnni]
        .into_iter()
        .filter(|l| l.available())
        .collect()
}

fn quant_of<'a>(
    qs: &'a [QuantizedMultiplier],
    bias: &'a [i32],
) -> impl Fn(usize) -> (i32, i32, i32) + 'a {
    move |c| (bias[c], qs[c].multiplier, qs[c].shift)
}

fn bias_bytes(bias: &[i32]) -> Vec<u8> {
    bias.iter().flat_map(|b| b.to_le_bytes()).collect()
}

/// Runs `kernel` over the whole output and over three random parts, and checks each part.
fn check_parts(
    rng: &mut Rng,
    pixels: usize,
    per_pixel: usize,
    want: &[i8],
    what: &str,
    mut kernel: impl FnMut(Range<usize>, &mut [i8]) -> bool,
) {
    let mut got = vec![0i8; want.len()];
    assert!(kernel(0..pixels, &mut got), "{what}: rejected");
    assert_eq!(got, want, "{what}");
    for _ in 0..3 {
        let a = rng.below(pixels + 1);
        let b = a + rng.below(pixels - a + 1);
        let mut part = vec![0i8; (b - a) * per_pixel];
        assert!(kernel(a..b, &mut part), "{what}: part {a}..{b} rejected");
        assert_eq!(
            part,
            want[a * per_pixel..b * per_pixel],
            "{what}: part {a}..{b}"
        );
    }
}

#[test]
fn conv_matches_reference() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ran = 0;
    // AVX-512 blocks packed for the single-rounding form, and for the two-step one.
    let mut forms = [0; 2];
    for case in 0..150 {
        let k = rng.pick(&[1, 1, 3, 3, 5, 2]);
        let spec = conv::ConvSpec {
            input: [
                1 + rng.below(2),
                k + rng.below(9),
                k + rng.below(9),
                1 + rng.below(40),
            ],
            // Up to 7 blocks of 16: the four-block tiles, then the two- and one-block ones.
            filter: [1 + rng.below(110), k, k, 0],
            output: [0; 4],
            stride: (1 + rng.below(2) as i32, 1 + rng.below(2) as i32),
            dilation: (1 + rng.below(2) as i32, 1),
            padding: rng.pick(&[padding::SAME, padding::VALID]),
            activation: rng.pick(&[activation::NONE, activation::RELU, activation::RELU6]),
            input_zero_point: rng.zero_point(),
            output_zero_point: rng.int8() as i64,
            output_scale: 0.05,
        };
        let mut spec = spec;
        spec.filter[3] = spec.input[3];
        let (sh, sw) = (spec.stride.0 as usize, spec.stride.1 as usize);
        let (dh, dw) = (spec.dilation.0 as usize, spec.dilation.1 as usize);
        let (Some(oh), Some(ow)) = (
            conv::out_size(spec.padding, spec.input[1], k, sh, dh),
            conv::out_size(spec.padding, spec.input[2], k, sw, dw),
        ) else {
            continue;
        };
        if oh == 0 || ow == 0 {
            continue;
        }
        spec.output = [spec.input[0], oh, ow, spec.filter[0]];
        let Ok(p) = conv::prepare(&spec) else {
            continue;
        };
        let oc = p.out_c;
        let qs: Vec<_> = (0..oc).map(|_| rng.multiplier()).collect();
        let (mult, shift): (Vec<i32>, Vec<i32>) =
            qs.iter().map(|q| (q.multiplier, q.shift)).unzip();
        let bias: Vec<i32> = (0..oc)
            // Shift 0: full-range biases, whose accumulators may wrap (the two-step path).
            .map(|_| (rng.next() as i32) >> rng.pick(&[0, 8, 16, 31]))
            .collect();
        let with_bias = rng.below(4) != 0;
        let bias = if with_bias { bias } else { vec![0; oc] };
        let bias_b = bias_bytes(&bias);
        let input = rng.bytes(p.batches * p.in_h * p.in_w * p.in_c);
        let filter = rng.bytes(oc * k * k * p.in_c);
        let mut want = vec![0i8; conv_pixels(&p) * oc];
        let b = with_bias.then_some(&bias_b[..]);
        conv::eval(&p, &mult, &shift, &input, &filter, b, &mut want);
        for level in levels() {
            let mut packed = vec![0u8; conv_packed_bytes(level, &p)];
            if packed.is_empty() {
                continue;
            }
            pack_conv(level, &p, &filter, quant_of(&qs, &bias), &mut packed);
            if level == Level::Avx512Vnni {
                let bb = block_bytes(level, conv_depth(&p));
                for block in packed.chunks(bb) {
                    let s0 = &block[4 * QUANT_WORDS * 16 + EXACT_SHIFTS..][..8];
                    forms[usize::from(s0 == [0; 8])] += 1;
                }
            }
            ran += 1;
            let what = std::format!("case {case} {level:?} {p:?}");
            check_parts(&mut rng, conv_pixels(&p), oc, &want, &what, |px, out| {
                conv(level, &p, &packed, &input, out, px)
            });
        }
    }
    assert!(ran >= 100, "only {ran} convolutions compared");
    if levels().contains(&Level::Avx512Vnni) {
        assert!(
            forms[0] > 0 && forms[1] > 0,
            "requantisation forms (single, two-step): {forms:?}"
        );
    }
}

/// `(x * m + K - [x < 0] * D) >> s` with `exact_requant`'s constants, in plain integers, as the
/// AVX-512 kernels compute it (the sign of `x` standing for that of `x * m`).
fn single_rounding(x: i32, (k, d, s): (i64, i64, i64), m: i32) -> i64 {
    let p = x as i64 * m as i64;
    (p + k - if x < 0 { d } else { 0 }) >> s
}

#[test]
fn single_rounding_equals_two_roundings() {
    let mut rng = Rng(0x5eed_0f7f_117e_0042);
    let mut ties = 0;
    for _ in 0..400_000 {
        let q = rng.multiplier();
        // Sometimes a power of two, whose products land on ties often; sometimes 0 (a zero
        // scale), where `[x < 0]` and `[x * m < 0]` differ.
        let m = match rng.below(8) {
            0 | 1 => 1 << 30,
            2 => 0,
            _ => q.multiplier,
        };
        let shift = q.shift.min(0) - rng.below(12) as i32;
        let offset = rng.int8() as i32;
        let e = -shift;
        let x = match rng.below(3) {
            0 => rng.next() as i32,
            1 => rng.range(-5000, 5000) as i32,
            // Near the rounding boundaries: x * m close to (t + 1/2) * 2^(31 + e).
            _ => {
                let t = rng.range(-300, 300);
                let target = (2 * t + 1) << (30 + e);
                let x = target / m.max(1) as i64 + rng.range(-2, 3);
                x.clamp(i32::MIN as i64, i32::MAX as i64) as i32
            }
        };
        let want =
            crate::quant::multiply_by_quantized_multiplier(x, m, shift) as i64 + offset as i64;
        let c = exact_requant(m, shift, offset, 0).expect("no left shift, e <= 23");
        assert_eq!(
            single_rounding(x, c, m),
            want,
            "x {x} m {m} shift {shift} offset {offset}"
        );
        // Ties of the second rounding (the first rounded value exactly halfway).
        let h = crate::quant::saturating_rounding_doubling_high_mul(x, m);
        ties += i32::from(e > 0 && h & ((1 << e) - 1) == 1 << (e - 1));
    }
    assert!(ties > 0, "no exact ties exercised");
    // Where the single rounding would not be exact, the packing says so.
    assert_eq!(exact_requant(1 << 30, 1, 0, 0), None, "left shift");
    assert_eq!(
        exact_requant(1 << 30, -24, 0, 0),
        None,
        "right shift past 23"
    );
    assert_eq!(
        exact_requant(1 << 30, -3, 0, i32::MAX as i64),
        None,
        "accumulator bound"
    );
}

#[test]
fn depthwise_matches_reference() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut ran = 0;
    let mut declined = 0;
    for case in 0..200 {
        // Square 3x3 and 5x5 filters with strides 1 and 2 run the AVX-512 kernel's unrolled
        // windows; the other shapes, strides and dilations its tabulated one.
        let kh = rng.pick(&[3, 3, 5, 1, 2]);
        let kw = match rng.below(4) {
            0 => rng.pick(&[1, 2, 3, 4]),
            _ => kh,
        };
        let c = 1 + rng.below(80);
        // Rows up to 40 wide: several strips, a short last one, parts starting mid-row.
        let (n, h, w) = (1 + rng.below(2), kh + rng.below(10), kw + rng.below(40));
        let stride = [1 + rng.below(2), 1 + rng.pick(&[0, 0, 1, 1, 2])];
        let dilation = [1 + rng.below(2), 1 + rng.pick(&[0, 0, 0, 1])];
        let pad = rng.pick(&[Padding::Same, Padding::Valid]);
        let (Some((oh, _)), Some((ow, _))) = (
            depthwise_conv::out_size_and_padding(pad, h, kh, stride[0], dilation[0]),
            depthwise_conv::out_size_and_padding(pad, w, kw, stride[1], dilation[1]),
        ) else {
            continue;
        };
        let act = rng.pick(&[FusedActivation::None, FusedActivation::Relu6]);
        let zp_in = rng.zero_point() as i32;
        let Ok(p) = depthwise_conv::prepare(
            [n, h, w, c],
            [1, kh, kw, c],
            [n, oh, ow, c],
            stride,
            dilation,
            pad,
            1,
            act,
            0.02,
            zp_in,
            0.05,
            rng.int8() as i32,
        ) else {
            continue;
        };
        // Scaled down further half the time, so that results land inside the int8 range
        // (where the rounding shows) rather than saturating.
        let qs: Vec<_> = (0..c)
            .map(|_| {
                let q = rng.multiplier();
                let shift = q.shift - rng.pick(&[0, 6]);
                QuantizedMultiplier { shift, ..q }
            })
            .collect();
        let (mult, shift): (Vec<i32>, Vec<i32>) =
            qs.iter().map(|q| (q.multiplier, q.shift)).unzip();
        let bias_shift = rng.pick(&[0, 12, 12]);
        let bias: Vec<i32> = (0..c).map(|_| (rng.next() as i32) >> bias_shift).collect();
        let bias_b = bias_bytes(&bias);
        let input = rng.bytes(n * h * w * c);
        let filter = rng.bytes(kh * kw * c);
        let mut want = vec![0i8; n * oh * ow * c];
        depthwise_conv::eval_split(&p, &mult, &shift, &input, &filter, Some(&bias_b), &mut want);
        for level in levels() {
            let mut packed = vec![0u8; depthwise_packed_bytes(level, &p)];
            if packed.is_empty() {
                declined += 1;
                continue;
            }
            pack_depthwise(level, &p, &filter, quant_of(&qs, &bias), &mut packed);
            ran += 1;
            let what = std::format!("case {case} {level:?} {p:?}");
            check_parts(&mut rng, n * oh * ow, c, &want, &what, |px, out| {
                depthwise(level, &p, &packed, &input, out, px)
            });
        }
    }
    assert!(ran >= 150, "only {ran} depthwise convolutions compared");
    // Every filter here fits both kernels (the AVX-512 one declines only strips whose input
    // columns pass its table, see `depthwise_declines_what_its_table_cannot_hold`).
    assert_eq!(declined, 0);
}

#[test]
fn depthwise_declines_what_its_table_cannot_hold() {
    // A 3x3 filter with a row stride of 80: a strip of 16 pixels spans 1203 input columns in
    // each of 3 kernel rows, past the AVX-512 kernel's table, which then leaves the layer to
    // the portable kernels; AVX2 has no such limit.
    let (w, c) = (400, 8);
    let ow = depthwise_conv::out_size_and_padding(Padding::Valid, w, 3, 80, 1)
        .unwrap()
        .0;
    let p = depthwise_conv::prepare(
        [1, 3, w, c],
        [1, 3, 3, c],
        [1, 1, ow, c],
        [1, 80],
        [1, 1],
        Padding::Valid,
        1,
        FusedActivation::None,
        0.02,
        0,
        0.05,
        0,
    )
    .unwrap();
    for level in levels() {
        let bytes = depthwise_packed_bytes(level, &p);
        assert_eq!(bytes == 0, level == Level::Avx512Vnni, "{level:?}");
        if bytes == 0 {
            let input = vec![0i8; 3 * w * c];
            let mut out = vec![0i8; ow * c];
            assert!(!depthwise(level, &p, &[], &input, &mut out, 0..ow));
        }
    }
}

#[test]
fn fully_connected_matches_reference() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for case in 0..60 {
        let (batches, depth, out) = (1 + rng.below(3), 1 + rng.below(300), 1 + rng.below(70));
        let in_dims = [batches as i32, depth as i32];
        let out_dims = [batches as i32, out as i32];
        let spec = fully_connected::FcSpec {
            input_elements: batches * depth,
            filter: [out, depth],
            input_dims: &in_dims,
            output_dims: &out_dims,
            keep_num_dims: false,
            activation: activation::NONE,
            input_zero_point: rng.int8() as i64,
            output_zero_point: rng.int8() as i64,
            output_scale: 1.0,
        };
        let p = fully_connected::prepare(&spec).unwrap();
        let scales: Vec<f64> = (0..out)
            .map(|_| rng.multiplier().multiplier as f64 * 1e-12)
            .collect();
        let bias: Vec<i32> = (0..out).map(|_| (rng.next() as i32) >> 10).collect();
        let bias_b = bias_bytes(&bias);
        let input = rng.bytes(batches * depth);
        let filter = rng.bytes(out * depth);
        let mut want = vec![0i8; batches * out];
        fully_connected::eval(&p, &scales, &input, &filter, Some(&bias_b), &mut want);
        for level in levels() {
            let mut packed = vec![0u8; fc_packed_bytes(level, &p)];
            pack_fc(level, &p, &filter, |c| bias[c], &mut packed);
            let mut got = vec![0i8; want.len()];
            assert!(fully_connected(
                level, &p, &scales, &packed, &input, &mut got
            ));
            assert_eq!(got, want, "case {case} {level:?}");
        }
    }
}

#[test]
fn add_matches_reference() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for case in 0..100 {
        // Up to 5 blocks of 64 (the table lookups' width) and a short last one.
        let n = 1 + rng.below(300);
        let scales = [
            0.01 + rng.below(100) as f32 * 1e-3,
            0.02,
            0.03 + rng.below(50) as f32 * 1e-3,
        ];
        let Ok(p) = add::prepare(
            scales[0],
            rng.int8() as i32,
            scales[1],
            rng.int8() as i32,
            scales[2],
            rng.int8() as i32,
            rng.pick(&[FusedActivation::None, FusedActivation::Relu]),
            &[n],
            &[n],
            &[n],
        ) else {
            continue;
        };
        let (a, b) = (rng.bytes(n), rng.bytes(n));
        let mut want = vec![0i8; n];
        add::eval(&p, &a, &b, &mut want);
        for level in levels() {
            let mut got = vec![0i8; n];
            assert!(add(level, &p, &a, &b, &mut got));
            assert_eq!(got, want, "case {case} {level:?}");
        }
        // Both AVX-512 forms, whichever `add` picks on this CPU.
        if Level::Avx512Vnni.available() {
            let mut got = vec![0i8; n];
            // SAFETY: the CPU has the level; the slices have `n` elements.
            unsafe { avx512::add(&p, &a, &b, &mut got) };
            assert_eq!(got, want, "case {case} AVX-512 lane by lane");
        }
        if Level::vbmi() {
            for single in [true, false] {
                let mut got = vec![0i8; n];
                // SAFETY: as above, and the CPU has VBMI.
                unsafe { avx512::add_by_tables(&p, &a, &b, &mut got, single) };
                assert_eq!(got, want, "case {case} AVX-512 tables (single: {single})");
            }
        }
    }
}

#[test]
fn this_cpu_has_a_level_for_the_tests() {
    // The suite above is vacuous without one; every x86_64 machine we build on has AVX2.
    assert!(
        !levels().is_empty(),
        "neither AVX2 nor AVX-512 VNNI detected"
    );
}
