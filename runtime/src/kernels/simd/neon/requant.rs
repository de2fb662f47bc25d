//! TFLite's `MultiplyByQuantizedMultiplier` (`crate::quant::multiply_by_quantized_multiplier`)
//! on four lanes, each with its own multiplier and shift, bit for bit:
//! - the left shift is `x.wrapping_mul(1 << left)`, i.e. a plain (wrapping) `shl`;
//! - `SaturatingRoundingDoublingHighMul(a, b)` is `(a * b + 2^30) >> 31` in 64 bits (for
//!   negative products gemmlowp's nudge `1 - 2^30` followed by truncating division is the same
//!   floor), saturated only for `i32::MIN * i32::MIN`: exactly what `sqrdmulh` computes;
//! - `RoundingDivideByPOT` (round half away from zero) is `srshl` (round half up) after
//!   subtracting 1 from negative values when the exponent is non-zero (gemmlowp's NEON form).
//!   `srshl` rounds in extended precision, and the saturating subtract only touches `i32::MIN`,
//!   whose low bits are zero anyway.
//!
//! The unit tests compare it with the scalar function on edge and random values.

use core::arch::aarch64::*;

/// Per-lane parameters of one requantisation.
#[derive(Clone, Copy)]
pub(super) struct Requant {
    multiplier: int32x4_t,
    /// `clamp(shift, 0, 31)`.
    left: int32x4_t,
    /// `-clamp(-shift, 0, 31)`: `srshl` by a negative amount shifts right.
    neg_right: int32x4_t,
}

impl Requant {
    /// Lanes with `multiplier[i]` and `shift[i]` (as `multiply_by_quantized_multiplier` takes
    /// them: positive shifts go left, negative right, both clamped to 31).
    ///
    /// # Safety
    /// NEON (always present on the targets this module is built for).
    #[inline(always)]
    pub(super) unsafe fn new(multiplier: int32x4_t, shift: int32x4_t) -> Self {
        let zero = vdupq_n_s32(0);
        Self {
            multiplier,
            left: vminq_s32(vmaxq_s32(shift, zero), vdupq_n_s32(31)),
            neg_right: vmaxq_s32(vminq_s32(shift, zero), vdupq_n_s32(-31)),
        }
    }

    /// Loads four multipliers and shifts.
    ///
    /// # Safety
    /// Both pointers valid for four `i32` reads.
    #[inline(always)]
    pub(super) unsafe fn load(multiplier: *const i32, shift: *const i32) -> Self {
        Self::new(vld1q_s32(multiplier), vld1q_s32(shift))
    }

    /// `multiply_by_quantized_multiplier(x[i], multiplier[i], shift[i])` for each lane.
    ///
    /// # Safety
    /// NEON.
    #[inline(always)]
    pub(super) unsafe fn apply(&self, x: int32x4_t) -> int32x4_t {
        let x = vqrdmulhq_s32(vshlq_s32(x, self.left), self.multiplier);
        // -1 for negative lanes whose exponent is non-zero (the sign bit of x & -exponent).
        let fixup = vshrq_n_s32::<31>(vandq_s32(x, self.neg_right));
        vrshlq_s32(vqaddq_s32(x, fixup), self.neg_right)
    }
}

/// Narrows four int32x4 vectors (already clamped to the int8 range, or truncated like `as i8`)
/// to 16 int8 lanes in order.
///
/// # Safety
/// NEON.
#[inline(always)]
pub(super) unsafe fn narrow16(v: [int32x4_t; 4]) -> int8x16_t {
    let a = vmovn_high_s32(vmovn_s32(v[0]), v[1]);
    let b = vmovn_high_s32(vmovn_s32(v[2]), v[3]);
    vmovn_high_s16(vmovn_s16(a), b)
}

/// Narrows two int32x4 vectors to 8 int8 lanes (truncating like `as i8`).
///
/// # Safety
/// NEON.
#[inline(always)]
pub(super) unsafe fn narrow8(lo: int32x4_t, hi: int32x4_t) -> int8x8_t {
    vmovn_s16(vmovn_high_s32(vmovn_s32(lo), hi))
}
