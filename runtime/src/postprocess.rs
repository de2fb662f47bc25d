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
//!   Taylor polynomial); its relative error against a correctly rounded `exp` is below `4e-16`
//!   over the whole finite range (tested against `f64::exp`).
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

/// Lines of `bytes` without their `\n` / `\r\n`; no trailing empty line after a final newline.
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}
