//! Deterministic test data shared by the optimised kernels' tests (no dependency).

use crate::quant::QuantizedMultiplier;
use crate::tflite::schema::activation;
use std::vec::Vec;

/// xorshift64*: deterministic test data without a dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    pub(crate) fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as i64, hi as i64) as usize
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.next() as i8).collect()
    }
    /// A zero point: often an extreme of the int8 range.
    pub(crate) fn zero_point(&mut self) -> i64 {
        match self.next() % 4 {
            0 => -128,
            1 => 127,
            _ => self.range(-128, 127),
        }
    }
    pub(crate) fn activation(&mut self) -> i8 {
        [activation::NONE, activation::RELU, activation::RELU6][self.size(0, 2)]
    }
    /// Per-channel multipliers for real scales from 2^-16 to 4 (negative and positive
    /// shifts), as `(mantissas, shifts)`.
    pub(crate) fn multipliers(&mut self, n: usize) -> (Vec<i32>, Vec<i32>) {
        (0..n)
            .map(|_| {
                let real = (self.range(1, 1 << 20) as f64 / (1 << 20) as f64)
                    * 2f64.powi(self.range(-16, 2) as i32);
                let q = QuantizedMultiplier::from_f64(real);
                (q.multiplier, q.shift)
            })
            .unzip()
    }
    /// Little-endian int32 bias bytes, or none; sometimes full-range values (wrapping).
    pub(crate) fn bias(&mut self, n: usize) -> Option<Vec<u8>> {
        let full = self.next().is_multiple_of(4);
        (!self.next().is_multiple_of(3)).then(|| {
            (0..n)
                .flat_map(|_| {
                    let b = if full {
                        self.next() as i32
                    } else {
                        self.range(-20_000, 20_000) as i32
                    };
                    b.to_le_bytes()
                })
                .collect()
        })
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// One uniform int8 value.
    pub(crate) fn int8(&mut self) -> i8 {
        self.next() as i8
    }
    /// One of `xs`.
    pub(crate) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    /// A real multiplier between 2^-12 and 4 (left shifts included), quantised.
    pub(crate) fn multiplier(&mut self) -> QuantizedMultiplier {
        let e = self.below(14) as i32 - 12;
        let m = 0.5 + (self.below(1 << 20) as f64) / (1u64 << 21) as f64;
        QuantizedMultiplier::from_f64(m * 2f64.powi(e))
    }
}
