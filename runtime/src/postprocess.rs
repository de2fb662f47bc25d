//! Post-processing of a classifier's output: dequantisation, softmax, sigmoid, top-k,
//! per-class thresholds and `labels.txt` lookup.
//!
//! `no_std`, no heap: every function writes into caller buffers. Floating-point results are
//! computed in `f64` with IEEE-754 basic operations only (no libm), so they are identical on
//! every platform that implements IEEE-754 binary64 (x86, aarch64, and Cortex-M with software
//! `f64`).
//!
//! * [`dequantize`] matches TFLite's reference `Dequantize`:
//!   `out = (float)((double)scale * (q - zero_point))`.
//! * [`exp`] is this crate's `f64` exponential (Cody-Waite range reduction and a degree-13
//!   Taylor polynomial); its relative error against std's `f64::exp` is at most `2.3e-16`
//!   (about 1 ulp) over every normal result, and the tests hold it below `4e-16`.
//! * [`softmax`] is the numerically stable `exp(x_i - max) / sum_j exp(x_j - max)`, evaluated in
//!   `f64` and rounded once to `f32`.
//! * [`sigmoid`] is `1 / (1 + exp(-x))` (or `exp(x) / (1 + exp(x))` for negative `x`), in `f64`.
//! * [`top_k`] orders by score, descending, and ties by index, ascending.
//! * [`above_thresholds`] returns, in ascending order, the classes whose score is strictly
//!   greater than that class's threshold (multi-label decisions).
//! * [`Labels`] reads `labels.txt` in place (one label per line, `\n` or `\r\n`, final newline
//!   optional, a leading UTF-8 byte-order mark ignored).

use core::cmp::Ordering;
use core::fmt;

/// Why a post-processing step failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PostprocessError {
    /// Two buffers that must have the same length do not.
    LengthMismatch {
        /// The buffer at fault.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// Its length.
        found: usize,
    },
    /// `k` (the output length of [`top_k`]) exceeds the number of scores.
    KTooLarge {
        /// Requested `k`.
        k: usize,
        /// Number of scores.
        n: usize,
    },
    /// A value is NaN (or, for [`softmax`] and [`sigmoid`], infinite).
    NotFinite {
        /// The buffer holding it.
        what: &'static str,
        /// Its index.
        index: usize,
    },
    /// The quantisation scale is not a finite positive number.
    InvalidScale {
        /// The scale.
        scale: f32,
    },
    /// The output buffer cannot hold every result.
    OutputTooSmall {
        /// Results to write.
        needed: usize,
        /// Buffer length.
        len: usize,
    },
}

impl fmt::Display for PostprocessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PostprocessError::LengthMismatch {
                what,
                expected,
                found,
            } => write!(
                f,
                "postprocess: {what} has {found} elements, expected {expected}"
            ),
            PostprocessError::KTooLarge { k, n } => {
                write!(f, "postprocess: top-k with k = {k} but only {n} scores")
            }
            PostprocessError::NotFinite { what, index } => {
                write!(f, "postprocess: {what}[{index}] is not a finite number")
            }
            PostprocessError::InvalidScale { scale } => write!(
                f,
                "postprocess: quantisation scale {scale} is not a finite positive number"
            ),
            PostprocessError::OutputTooSmall { needed, len } => write!(
                f,
                "postprocess: output buffer holds {len} elements but {needed} are needed"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PostprocessError {}

fn check_len(what: &'static str, expected: usize, found: usize) -> Result<(), PostprocessError> {
    if expected == found {
        Ok(())
    } else {
        Err(PostprocessError::LengthMismatch {
            what,
            expected,
            found,
        })
    }
}

/// Dequantises int8 values: `out[i] = (float)((double)scale * (input[i] - zero_point))`, exactly
/// as TFLite's reference `Dequantize` kernel.
///
/// `out` must have the length of `input`; `scale` must be finite and positive.
pub fn dequantize(
    input: &[i8],
    scale: f32,
    zero_point: i32,
    out: &mut [f32],
) -> Result<(), PostprocessError> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(PostprocessError::InvalidScale { scale });
    }
    check_len("dequantize output", input.len(), out.len())?;
    let scale = f64::from(scale);
    for (o, &q) in out.iter_mut().zip(input) {
        // i64: zero_point is any i32, so the difference needs 33 bits.
        *o = (scale * (i64::from(q) - i64::from(zero_point)) as f64) as f32;
    }
    Ok(())
}

/// `e^x` in `f64` without libm; relative error below `4e-16` (about 2 ulp) for every `x` whose
/// result is a normal number. Returns `+inf` above `709.78`, `0` below `-745.14`, NaN for NaN.
pub fn exp(x: f64) -> f64 {
    // fdlibm's split of ln 2: LN2_HI has 32 trailing zero bits, so k * LN2_HI is exact for |k| < 2^20.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 6.93147180369123816490e-01
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.90821492927058770002e-10
    const LOG2_E: f64 = core::f64::consts::LOG2_E;
    if x.is_nan() {
        return x;
    }
    if x > 709.782_712_893_384 {
        return f64::INFINITY;
    }
    if x < -745.133_219_101_941_2 {
        return 0.0;
    }
    // x = k ln2 + r with |r| <= ln2 / 2 (k = nearest integer to x / ln2).
    let kf = x * LOG2_E;
    let k = if kf >= 0.0 {
        (kf + 0.5) as i32
    } else {
        (kf - 0.5) as i32
    };
    let r = (x - f64::from(k) * LN2_HI) - f64::from(k) * LN2_LO;
    // e^r by its Taylor series to r^13 (remainder < 0.35^14 / 14! < 5e-18), in Horner form.
    let mut p = 1.0;
    let mut n = 13;
    while n > 0 {
        p = 1.0 + p * r / f64::from(n);
        n -= 1;
    }
    // 2^k in two normal factors (k is in -1075..=1024, outside the normal exponent range).
    let k1 = k / 2;
    p * pow2(k1) * pow2(k - k1)
}

/// `2^n` for `-1022 <= n <= 1023`.
fn pow2(n: i32) -> f64 {
    f64::from_bits(((n + 1023) as u64) << 52)
}

/// Numerically stable softmax of `logits` into `out` (same length), computed in `f64`.
///
/// Errors on a length mismatch or a NaN/infinite logit. An empty input gives an empty output.
pub fn softmax(logits: &[f32], out: &mut [f32]) -> Result<(), PostprocessError> {
    check_len("softmax output", logits.len(), out.len())?;
    let mut max = f32::NEG_INFINITY;
    for (index, &x) in logits.iter().enumerate() {
        if !x.is_finite() {
            return Err(PostprocessError::NotFinite {
                what: "softmax input",
                index,
            });
        }
        max = max.max(x);
    }
    let max = f64::from(max);
    // Every term is in (0, 1] and the max term is 1, so the sum is in [1, n]: no overflow, no 0/0.
    let sum: f64 = logits.iter().map(|&x| exp(f64::from(x) - max)).sum();
    // exp is recomputed rather than stored so that no f32 rounding happens before the division.
    for (o, &x) in out.iter_mut().zip(logits) {
        *o = (exp(f64::from(x) - max) / sum) as f32;
    }
    Ok(())
}

/// Logistic sigmoid of each element of `input` into `out` (same length), computed in `f64`.
///
/// Errors on a length mismatch or a NaN/infinite input.
pub fn sigmoid(input: &[f32], out: &mut [f32]) -> Result<(), PostprocessError> {
    check_len("sigmoid output", input.len(), out.len())?;
    for (index, (o, &x)) in out.iter_mut().zip(input).enumerate() {
        if !x.is_finite() {
            return Err(PostprocessError::NotFinite {
                what: "sigmoid input",
                index,
            });
        }
        *o = sigmoid_f64(f64::from(x)) as f32;
    }
    Ok(())
}

/// `1 / (1 + e^-x)`, evaluated so that `exp` never overflows.
fn sigmoid_f64(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + exp(-x))
    } else {
        let e = exp(x);
        e / (1.0 + e)
    }
}

/// `true` unless `v` is unordered with itself (a float NaN).
fn comparable<T: PartialOrd>(v: &T) -> bool {
    v.partial_cmp(v) == Some(Ordering::Equal)
}

/// Writes into `out` the indices of the `k = out.len()` largest `scores`, largest first; equal
/// scores keep ascending index order. Works on any ordered type (f32 probabilities, raw i8
/// outputs, ...). `O(n * k)`, no allocation.
///
/// Errors when `k > scores.len()` or a score is NaN.
pub fn top_k<T: PartialOrd + Copy>(
    scores: &[T],
    out: &mut [usize],
) -> Result<(), PostprocessError> {
    let k = out.len();
    if k > scores.len() {
        return Err(PostprocessError::KTooLarge { k, n: scores.len() });
    }
    let mut filled = 0;
    for (i, s) in scores.iter().enumerate() {
        if !comparable(s) {
            return Err(PostprocessError::NotFinite {
                what: "top-k scores",
                index: i,
            });
        }
        // First slot whose score is strictly smaller: ties stay behind earlier indices.
        // Every index in out[..filled] came from this loop, so it is < scores.len().
        let pos = out[..filled]
            .iter()
            .position(|&j| scores.get(j).is_some_and(|t| *s > *t))
            .unwrap_or(filled);
        if pos >= k {
            continue;
        }
        let end = if filled < k { filled + 1 } else { k };
        out[pos..end].rotate_right(1);
        out[pos] = i;
        filled = end;
    }
    Ok(())
}

/// Multi-label decision: writes into `out`, ascending, every class `i` with
/// `scores[i] > thresholds[i]` (strictly greater), and returns how many there are.
///
/// `thresholds` must have the length of `scores`. Errors on NaN in either, or when `out` is
/// too short for all the classes above threshold (the error gives the number needed; an `out`
/// as long as `scores` always suffices).
pub fn above_thresholds(
    scores: &[f32],
    thresholds: &[f32],
    out: &mut [usize],
) -> Result<usize, PostprocessError> {
    check_len("thresholds", scores.len(), thresholds.len())?;
    let mut count = 0;
    for (i, (&s, &t)) in scores.iter().zip(thresholds).enumerate() {
        if s.is_nan() {
            return Err(PostprocessError::NotFinite {
                what: "scores",
                index: i,
            });
        }
        if t.is_nan() {
            return Err(PostprocessError::NotFinite {
                what: "thresholds",
                index: i,
            });
        }
        if s > t {
            if let Some(slot) = out.get_mut(count) {
                *slot = i;
            }
            count += 1;
        }
    }
    if count > out.len() {
        return Err(PostprocessError::OutputTooSmall {
            needed: count,
            len: out.len(),
        });
    }
    Ok(count)
}

/// Why a `labels.txt` could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelsError {
    /// A line is not valid UTF-8.
    InvalidUtf8 {
        /// 1-based line number.
        line: usize,
        /// Byte offset of the first invalid byte within the line.
        column: usize,
    },
    /// The file has a different number of labels than the model has classes.
    CountMismatch {
        /// Classes of the model.
        expected: usize,
        /// Labels in the file.
        found: usize,
    },
}

impl fmt::Display for LabelsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LabelsError::InvalidUtf8 { line, column } => write!(
                f,
                "labels.txt: line {line} is not valid UTF-8 (first bad byte at offset {column} in the line)"
            ),
            LabelsError::CountMismatch { expected, found } => write!(
                f,
                "labels.txt: has {found} labels but the model has {expected} classes"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LabelsError {}

/// The labels of a `labels.txt`, borrowed from its bytes: label `i` is line `i + 1`.
///
/// Lines end with `\n` or `\r\n`; the final newline is optional (a file ending in a newline has
/// no extra empty label). Empty lines in the middle are kept as empty labels so that indices
/// stay aligned with the model's classes. A leading UTF-8 byte-order mark is skipped.
#[derive(Clone, Copy, Debug)]
pub struct Labels<'a> {
    text: &'a str,
    len: usize,
}

impl<'a> Labels<'a> {
    /// Validates `bytes` (every line must be UTF-8) and counts the labels.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, LabelsError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut len = 0;
        for (i, line) in split_lines(bytes).enumerate() {
            if let Err(e) = core::str::from_utf8(line) {
                return Err(LabelsError::InvalidUtf8 {
                    line: i + 1,
                    column: e.valid_up_to(),
                });
            }
            len += 1;
        }
        // Every line is UTF-8 and the separators are ASCII, so the whole text is UTF-8.
        let text = core::str::from_utf8(bytes).map_err(|e| LabelsError::InvalidUtf8 {
            line: 1 + bytes
                .iter()
                .take(e.valid_up_to())
                .filter(|&&b| b == b'\n')
                .count(),
            column: 0,
        })?;
        Ok(Labels { text, len })
    }

    /// Like [`Labels::parse`], and also checks that there are exactly `classes` labels.
    pub fn parse_for(bytes: &'a [u8], classes: usize) -> Result<Self, LabelsError> {
        let labels = Self::parse(bytes)?;
        if labels.len != classes {
            return Err(LabelsError::CountMismatch {
                expected: classes,
                found: labels.len,
            });
        }
        Ok(labels)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when the file holds no label.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Label of class `index` (`O(index)`: the lines are scanned, nothing is stored).
    pub fn get(&self, index: usize) -> Option<&'a str> {
        self.iter().nth(index)
    }

    /// The labels in class order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let text = self.text;
        let body = text.strip_suffix('\n').unwrap_or(text);
        body.split('\n')
            .filter(move |_| !text.is_empty())
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
    }
}

/// Lines of `bytes` split at `\n` (a `\r` before it stays: this only validates and counts),
/// with no trailing empty line after a final newline.
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantize_matches_hand_values() {
        // scale 0.5, zero point -3: 0.5 * (-128 + 3) = -62.5, 0.5 * (127 + 3) = 65, 0.
        let mut out = [0f32; 3];
        dequantize(&[-128, 127, -3], 0.5, -3, &mut out).unwrap();
        assert_eq!(out, [-62.5, 65.0, 0.0]);
        // The product is taken in f64 and rounded once: 0.1f32 * 3 in f64, then to f32.
        dequantize(&[3, 0, 0], 0.1, 0, &mut out).unwrap();
        assert_eq!(out[0], (f64::from(0.1f32) * 3.0) as f32);
        // A zero point outside the i8 range still works (no i32 overflow).
        let mut one = [0f32; 1];
        dequantize(&[-128], 1.0, i32::MAX, &mut one).unwrap();
        assert_eq!(one[0], (-128.0 - i32::MAX as f64) as f32);
    }

    #[test]
    fn dequantize_rejects_bad_arguments() {
        let mut out = [0f32; 2];
        for scale in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(matches!(
                dequantize(&[1, 2], scale, 0, &mut out),
                Err(PostprocessError::InvalidScale { .. })
            ));
        }
        assert_eq!(
            dequantize(&[1, 2, 3], 1.0, 0, &mut out),
            Err(PostprocessError::LengthMismatch {
                what: "dequantize output",
                expected: 3,
                found: 2
            })
        );
    }

    #[test]
    fn exp_is_within_4e_16_of_std_over_the_whole_range() {
        let mut worst: f64 = 0.0;
        // ~200k points over every normal result, plus points near integers and multiples of ln 2.
        let mut x = -708.0;
        while x < 709.7 {
            for v in [x, x + 1e-9, x - 1e-9] {
                let (got, want) = (exp(v), v.exp());
                worst = worst.max(((got - want) / want).abs());
            }
            x += 0.007_123_456_7;
        }
        for k in -1020..=1023 {
            let v = f64::from(k) * core::f64::consts::LN_2;
            if v > -708.0 && v < 709.7 {
                worst = worst.max(((exp(v) - v.exp()) / v.exp()).abs());
            }
        }
        assert!(worst < 4e-16, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert!((exp(1.0) - core::f64::consts::E).abs() <= f64::EPSILON * 3.0);
        assert!(exp(f64::NAN).is_nan());
        assert_eq!(exp(710.0), f64::INFINITY);
        assert_eq!(exp(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp(-746.0), 0.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        // The largest finite result and the subnormal range.
        assert!(exp(709.78).is_finite() && exp(709.78) > 1.7e308);
        let sub = exp(-740.0);
        assert!(sub > 0.0 && ((sub - (-740.0f64).exp()) / (-740.0f64).exp()).abs() < 1e-10);
    }

    #[test]
    fn softmax_matches_hand_values() {
        // [1, 2, 3]: e^-2, e^-1, 1 over their sum 1.5032147244...
        // = 0.0900305731704, 0.2447284710548, 0.6652409557748.
        let mut out = [0f32; 3];
        softmax(&[1.0, 2.0, 3.0], &mut out).unwrap();
        let want = [
            0.090_030_573_170_4,
            0.244_728_471_054_8,
            0.665_240_955_774_8,
        ];
        for (o, w) in out.iter().zip(want) {
            assert_eq!(*o, w as f32);
        }
        // Stable for huge logits: a naive exp(1000) overflows.
        let mut two = [0f32; 2];
        softmax(&[1000.0, 1000.0], &mut two).unwrap();
        assert_eq!(two, [0.5, 0.5]);
        softmax(&[-1e30, 1e30], &mut two).unwrap();
        assert_eq!(two, [0.0, 1.0]);
        // ln 3 apart: 1/4 and 3/4.
        softmax(&[0.0, 3f32.ln()], &mut two).unwrap();
        assert!((two[0] - 0.25).abs() < 1e-7 && (two[1] - 0.75).abs() < 1e-7);
        softmax(&[], &mut []).unwrap();
    }

    #[test]
    fn softmax_and_sigmoid_reject_bad_input() {
        let mut out = [0f32; 3];
        assert_eq!(
            softmax(&[1.0, f32::NAN, 2.0], &mut out),
            Err(PostprocessError::NotFinite {
                what: "softmax input",
                index: 1
            })
        );
        assert_eq!(
            softmax(&[1.0, 2.0, f32::INFINITY], &mut out),
            Err(PostprocessError::NotFinite {
                what: "softmax input",
                index: 2
            })
        );
        assert!(matches!(
            softmax(&[1.0], &mut out),
            Err(PostprocessError::LengthMismatch { .. })
        ));
        assert_eq!(
            sigmoid(&[f32::NAN, 0.0, 0.0], &mut out),
            Err(PostprocessError::NotFinite {
                what: "sigmoid input",
                index: 0
            })
        );
    }

    #[test]
    fn sigmoid_matches_hand_values() {
        // sigmoid(ln 3) = 1 / (1 + 1/3) = 3/4; sigmoid(-ln 3) = 1/4; sigmoid(0) = 1/2.
        let l3 = 3f32.ln();
        let mut out = [0f32; 5];
        sigmoid(&[0.0, l3, -l3, 100.0, -100.0], &mut out).unwrap();
        assert_eq!(out[0], 0.5);
        assert!((out[1] - 0.75).abs() < 1e-7 && (out[2] - 0.25).abs() < 1e-7);
        // 1 / (1 + e^-100) rounds to 1; e^-100 / (1 + e^-100) = 3.720076e-44 is an f32
        // subnormal: 3.720076e-44 / 2^-149 = 26.55 rounds to 27 units of the smallest subnormal.
        assert_eq!(out[3], 1.0);
        assert_eq!(out[4], f32::from_bits(27));
    }

    #[test]
    fn top_k_orders_by_score_then_index() {
        let scores = [0.1f32, 0.5, 0.5, 0.3, 0.5];
        let mut three = [usize::MAX; 3];
        top_k(&scores, &mut three).unwrap();
        assert_eq!(three, [1, 2, 4]);
        let mut all = [usize::MAX; 5];
        top_k(&scores, &mut all).unwrap();
        assert_eq!(all, [1, 2, 4, 3, 0]);
        let mut one = [usize::MAX; 1];
        top_k(&scores, &mut one).unwrap();
        assert_eq!(one, [1]);
        top_k(&scores, &mut []).unwrap();
        // Raw int8 logits work too; the maximum is last here.
        let q: [i8; 6] = [-128, 7, 7, -3, 127, 7];
        let mut two = [0; 2];
        top_k(&q, &mut two).unwrap();
        assert_eq!(two, [4, 1]);
        let mut four = [0; 4];
        top_k(&q, &mut four).unwrap();
        assert_eq!(four, [4, 1, 2, 5]);
    }

    #[test]
    fn top_k_rejects_bad_arguments() {
        let mut out = [0; 4];
        assert_eq!(
            top_k(&[1.0f32, 2.0, 3.0], &mut out),
            Err(PostprocessError::KTooLarge { k: 4, n: 3 })
        );
        assert_eq!(
            top_k(&[1.0f32, 2.0, f32::NAN, 0.0], &mut out),
            Err(PostprocessError::NotFinite {
                what: "top-k scores",
                index: 2
            })
        );
    }

    #[test]
    fn thresholds_select_strictly_greater() {
        let scores = [0.2f32, 0.7, 0.5, 0.9, 0.96];
        let thresholds = [0.5f32, 0.5, 0.5, 0.95, 0.95];
        let mut out = [usize::MAX; 5];
        let n = above_thresholds(&scores, &thresholds, &mut out).unwrap();
        assert_eq!(&out[..n], &[1, 4]);
        // Exactly two slots are enough, one is not.
        let mut two = [0; 2];
        assert_eq!(above_thresholds(&scores, &thresholds, &mut two), Ok(2));
        assert_eq!(two, [1, 4]);
        assert_eq!(
            above_thresholds(&scores, &thresholds, &mut two[..1]),
            Err(PostprocessError::OutputTooSmall { needed: 2, len: 1 })
        );
        assert_eq!(above_thresholds(&scores, &[1.0; 5], &mut []), Ok(0));
        assert_eq!(
            above_thresholds(&scores, &thresholds[..4], &mut out),
            Err(PostprocessError::LengthMismatch {
                what: "thresholds",
                expected: 5,
                found: 4
            })
        );
        assert_eq!(
            above_thresholds(&[0.1, 0.2], &[0.5, f32::NAN], &mut out),
            Err(PostprocessError::NotFinite {
                what: "thresholds",
                index: 1
            })
        );
    }

    #[test]
    fn labels_handle_crlf_missing_newline_and_bom() {
        let labels = Labels::parse(b"cat\r\ndog\nhot dog\r\nbird").unwrap();
        assert_eq!(labels.len(), 4);
        assert_eq!(labels.get(0), Some("cat"));
        assert_eq!(labels.get(1), Some("dog"));
        assert_eq!(labels.get(2), Some("hot dog"));
        assert_eq!(labels.get(3), Some("bird"));
        assert_eq!(labels.get(4), None);

        let labels = Labels::parse(b"\xEF\xBB\xBFa\nb\n").unwrap();
        assert_eq!(labels.iter().collect::<Vec<_>>(), ["a", "b"]);

        // Empty middle lines are kept so that indices stay aligned; "\r\n" final newline.
        let labels = Labels::parse("zero\n\ntwo\u{e9}\r\n".as_bytes()).unwrap();
        assert_eq!(labels.iter().collect::<Vec<_>>(), ["zero", "", "two\u{e9}"]);

        assert!(Labels::parse(b"").unwrap().is_empty());
        assert_eq!(
            Labels::parse(b"\n").unwrap().iter().collect::<Vec<_>>(),
            [""]
        );
    }

    #[test]
    fn labels_errors_name_the_line() {
        let err = Labels::parse(b"ok\r\nfine\nbad \xFF here\nlast").unwrap_err();
        assert_eq!(err, LabelsError::InvalidUtf8 { line: 3, column: 4 });
        let msg = err.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert_eq!(
            Labels::parse_for(b"a\nb\nc\n", 4).unwrap_err(),
            LabelsError::CountMismatch {
                expected: 4,
                found: 3
            }
        );
        assert_eq!(
            Labels::parse_for(b"a\nb\nc\n", 3).unwrap().get(2),
            Some("c")
        );
    }

    #[test]
    fn error_messages_name_the_fault() {
        let msg = PostprocessError::NotFinite {
            what: "softmax input",
            index: 7,
        }
        .to_string();
        assert!(msg.contains("softmax input[7]"), "{msg}");
        let msg = PostprocessError::KTooLarge { k: 5, n: 3 }.to_string();
        assert!(msg.contains("k = 5") && msg.contains('3'), "{msg}");
    }
}
