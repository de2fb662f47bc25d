//! The crate's only `unsafe` besides the DSP instructions (`kernels/simd/arm_dsp.rs`, inline
//! assembly): reinterpreting byte slices as `i8`, `i32`/`u32` or `f64` slices. All
//! target types accept every bit pattern, and the `i32`/`u32` views check alignment and length
//! (`align_to` with empty prefix and suffix), so these casts are sound.

/// `&[u8]` as `&[i8]` (same size and alignment, every bit pattern valid).
#[inline]
pub fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: u8 and i8 have identical layout; the length and lifetime are preserved.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}

/// `&mut [u8]` as `&mut [i8]`.
#[inline]
pub fn as_i8_mut(b: &mut [u8]) -> &mut [i8] {
    // SAFETY: as above; the exclusive borrow is transferred.
    unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<i8>(), b.len()) }
}

/// `&[u8]` as `&[i32]` when 4-aligned and a multiple of 4 long.
#[inline]
pub fn as_i32(b: &[u8]) -> Option<&[i32]> {
    // SAFETY: i32 has no invalid bit patterns; align_to only yields correctly aligned middles.
    let (pre, mid, post) = unsafe { b.align_to::<i32>() };
    (pre.is_empty() && post.is_empty()).then_some(mid)
}

/// `&mut [u8]` as `&mut [u32]` when 4-aligned and a multiple of 4 long.
#[inline]
pub fn as_u32_mut(b: &mut [u8]) -> Option<&mut [u32]> {
    // SAFETY: as for `as_i32`.
    let (pre, mid, post) = unsafe { b.align_to_mut::<u32>() };
    (pre.is_empty() && post.is_empty()).then_some(mid)
}

/// `&[u8]` as `&[f64]` when 8-aligned and a multiple of 8 long.
#[inline]
pub fn as_f64(b: &[u8]) -> Option<&[f64]> {
    // SAFETY: every bit pattern is a valid f64; align_to only yields aligned middles.
    let (pre, mid, post) = unsafe { b.align_to::<f64>() };
    (pre.is_empty() && post.is_empty()).then_some(mid)
}

/// Reads a native-endian u32 at word `i` of `b` (no alignment needed).
#[inline]
pub fn u32_word(b: &[u8], i: usize) -> Option<u32> {
    let s = b.get(4 * i..4 * i + 4)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// Writes a native-endian u32 at word `i`; false when out of range.
#[inline]
pub fn set_u32_word(b: &mut [u8], i: usize, v: u32) -> bool {
    match b.get_mut(4 * i..4 * i + 4) {
        Some(s) => {
            s.copy_from_slice(&v.to_ne_bytes());
            true
        }
        None => false,
    }
}
