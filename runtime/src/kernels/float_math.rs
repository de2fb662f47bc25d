//! The few float functions TFLite's `prepare` steps use to build lookup tables and bounds,
//! written without libm so the crate stays `no_std`.
//!
//! TFLite builds its int8 LOGISTIC and SOFTMAX tables with `std::exp` on `float` (glibc's `expf`,
//! which rounds to nearest in all but vanishingly rare cases). [`expf`] evaluates `exp` in `f64`
//! to about 1e-16 relative error and rounds once to `f32`, which gives the correctly rounded value
//! except when the exact result lies within ~1e-16 of an `f32` rounding boundary. The parity tests
//! compare every table entry against the real interpreter.

/// `ln(2)` split so that `k * LN2_HI` is exact for `|k| < 2^11` (fdlibm's constants).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const LOG2_E: f64 = core::f64::consts::LOG2_E;

/// `e^x` in `f64` (relative error about 2 ulp), for any `x`.
pub fn exp_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.8 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    // x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite reduction).
    let k = round_half_away_f64(x * LOG2_E);
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor series to r^20 / 20!: the truncation error is below 1e-26 for |r| <= 0.35.
    let mut p = 1.0;
    let mut n = 20;
    while n > 0 {
        p = 1.0 + p * r / n as f64;
        n -= 1;
    }
    scale_by_pow2(p, k as i32)
}

/// `x * 2^k` for `k` in about -1100..=1030, exact unless the result is subnormal.
fn scale_by_pow2(mut x: f64, mut k: i32) -> f64 {
    // Apply in steps of at most 2^1000 / 2^-1000 so each factor is a normal power of two.
    while k > 1000 {
        x *= pow2(1000);
        k -= 1000;
    }
    while k < -1000 {
        x *= pow2(-1000);
        k += 1000;
    }
    x * pow2(k)
}

/// `2^k` for `k` in -1022..=1023.
fn pow2(k: i32) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// `expf` (C's `std::exp(float)`): see the module documentation for the rounding argument.
pub fn expf(x: f32) -> f32 {
    exp_f64(x as f64) as f32
}

/// `roundf`: round half away from zero.
pub fn roundf(x: f32) -> f32 {
    // From 2^23 on every f32 is an integer (and NaN / infinities pass through).
    if x.is_nan() || x.abs() >= 8_388_608.0 {
        return x;
    }
    let t = x as i32 as f32; // exact truncation toward zero in this range
    let frac = x - t; // exact
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// `round` for `f64` (half away from zero), for values that fit in `i64`.
pub fn round_half_away_f64(x: f64) -> f64 {
    crate::quant::round_half_away(x)
}

/// `static_cast<int32_t>(float)` as x86-64 executes it (`cvttss2si`): truncation toward zero,
/// and the "integer indefinite" `i32::MIN` for NaN and out-of-range values (C++ leaves those
/// undefined; TFLite's x86 builds produce this).
pub fn f32_to_i32_x86(x: f32) -> i32 {
    if x.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        i32::MIN
    } else {
        x as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_known_values() {
        assert_eq!(exp_f64(0.0), 1.0);
        // e, e^-1 and e^10 to within 2 ulp.
        let close = |a: f64, b: f64| ((a - b) / b).abs() < 5e-16;
        assert!(close(exp_f64(1.0), core::f64::consts::E));
        assert!(close(exp_f64(-1.0), 0.367_879_441_171_442_33));
        assert!(close(exp_f64(10.0), 22_026.465_794_806_718));
        assert!(close(exp_f64(-20.0), 2.061_153_622_438_558e-9));
        assert_eq!(exp_f64(-800.0), 0.0);
        assert_eq!(exp_f64(800.0), f64::INFINITY);
        // Below the f32 subnormal range the float result flushes to zero.
        assert_eq!(expf(-104.0), 0.0);
        assert_eq!(expf(0.0), 1.0);
    }

    #[cfg(feature = "std")]
    #[test]
    fn exp_agrees_with_std_over_a_sweep() {
        let mut worst = 0.0f64;
        // Normal range only: below about -708 the f64 result is subnormal and loses precision
        // (irrelevant once rounded to f32).
        let mut x = -700.0;
        while x < 700.0 {
            let rel = ((exp_f64(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.0371;
        }
        assert!(worst < 1e-15, "worst relative error {worst}");
    }

    #[test]
    fn roundf_is_half_away_from_zero() {
        assert_eq!(roundf(2.5), 3.0);
        assert_eq!(roundf(-2.5), -3.0);
        assert_eq!(roundf(2.49), 2.0);
        assert_eq!(roundf(-0.4), 0.0);
        assert_eq!(roundf(1e10), 1e10);
    }

    #[test]
    fn float_to_int_follows_x86() {
        assert_eq!(f32_to_i32_x86(-3.9), -3);
        assert_eq!(f32_to_i32_x86(3e9), i32::MIN);
        assert_eq!(f32_to_i32_x86(f32::NAN), i32::MIN);
    }
}
