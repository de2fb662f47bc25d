//! Blocks of int8 dot products: `R` rows of a left operand against four rows of a right operand
//! (filter rows), each `len` bytes long, into exact int32 sums.
//!
//! Two multiply-accumulate steps: `sdot` (the Armv8.2 dot-product extension: 4 int8 products
//! summed into each int32 lane) and, without it, `smull` + `sadalp` (each int8 x int8 product is
//! exact in an int16 lane, one product per lane: `smlal`-style pairing would overflow int16 for
//! (-128)(-128) + (-128)(-128); `sadalp` adds pairs into int32). Integer sums are exact in any
//! order (wrapping, as the reference's `wrapping_add`), so both give the reference's result.

use core::arch::aarch64::*;

/// One 16-byte step of a dot product into four int32 lanes (lane order is irrelevant: the
/// lanes are summed at the end).
pub(super) trait Mac {
    /// `acc` plus the 16 products `a[i] * b[i]`, summed into its four lanes.
    ///
    /// # Safety
    /// The CPU must have the instructions the implementation uses.
    unsafe fn mac(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// `sdot` (FEAT_DotProd). Written as inline assembly: `vdotq_s32` is not stable Rust.
pub(super) struct Sdot;

impl Mac for Sdot {
    #[inline(always)]
    unsafe fn mac(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        core::arch::asm!(
            ".arch_extension dotprod",
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
        acc
    }
}

/// Base NEON: `smull`/`smull2` (int8 x int8 -> int16, exact) then `sadalp` (pairs -> int32).
pub(super) struct Smull;

impl Mac for Smull {
    #[inline(always)]
    unsafe fn mac(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

/// `out[r]` lane `c` = `sum_{k < len} rows[r][k] * cols[c][k]` (wrapping int32).
///
/// # Safety
/// Every pointer must be valid for `len` bytes of reads, and the CPU must support `M`.
#[inline(always)]
pub(super) unsafe fn block<M: Mac, const R: usize>(
    rows: &[*const i8; R],
    cols: &[*const i8; 4],
    len: usize,
) -> [int32x4_t; R] {
    let zero = vdupq_n_s32(0);
    let mut acc = [[zero; 4]; R];
    let mut k = 0;
    while k + 16 <= len {
        let b = [
            vld1q_s8(cols[0].add(k)),
            vld1q_s8(cols[1].add(k)),
            vld1q_s8(cols[2].add(k)),
            vld1q_s8(cols[3].add(k)),
        ];
        for r in 0..R {
            let a = vld1q_s8(rows[r].add(k));
            for c in 0..4 {
                acc[r][c] = M::mac(acc[r][c], a, b[c]);
            }
        }
        k += 16;
    }
    let rest = len - k;
    if rest > 0 {
        // The last partial step through zero-padded copies (zeros add nothing).
        let mut tb = [[0i8; 16]; 4];
        for c in 0..4 {
            core::ptr::copy_nonoverlapping(cols[c].add(k), tb[c].as_mut_ptr(), rest);
        }
        let b = [
            vld1q_s8(tb[0].as_ptr()),
            vld1q_s8(tb[1].as_ptr()),
            vld1q_s8(tb[2].as_ptr()),
            vld1q_s8(tb[3].as_ptr()),
        ];
        for r in 0..R {
            let mut ta = [0i8; 16];
            core::ptr::copy_nonoverlapping(rows[r].add(k), ta.as_mut_ptr(), rest);
            let a = vld1q_s8(ta.as_ptr());
            for c in 0..4 {
                acc[r][c] = M::mac(acc[r][c], a, b[c]);
            }
        }
    }
    let mut out = [zero; R];
    for r in 0..R {
        let [a0, a1, a2, a3] = acc[r];
        out[r] = vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3));
    }
    out
}

/// `sum_{k < len} row[k]` (for the input-offset correction `offset * sum(w)`).
///
/// # Safety
/// `row` must be valid for `len` bytes of reads.
#[inline(always)]
pub(super) unsafe fn row_sum(row: *const i8, len: usize) -> i32 {
    let mut s = 0i32;
    let mut k = 0;
    while k + 16 <= len {
        // 16 int8 values sum to at most 2032 in magnitude: exact in the int16 result.
        s = s.wrapping_add(i32::from(vaddlvq_s8(vld1q_s8(row.add(k)))));
        k += 16;
    }
    while k < len {
        s = s.wrapping_add(i32::from(*row.add(k)));
        k += 1;
    }
    s
}
