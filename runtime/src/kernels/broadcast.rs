//! NumPy-style broadcasting of two operands up to [`MAX_RANK`] dimensions, as TFLite's
//! `BroadcastAdd6DSlow` / `BroadcastMul6DSlow` walk it: shapes are right-aligned, a dimension of
//! 1 repeats, and the output shape must be the broadcast of the two.

/// Highest rank the binary kernels accept (TFLite's broadcast kernels go to 6-D).
pub const MAX_RANK: usize = 6;

/// Output dimensions and per-operand strides, all padded on the left to [`MAX_RANK`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// Output dimensions.
    pub out_dims: [usize; MAX_RANK],
    /// Element stride of operand A along each output dimension (0 where A repeats).
    pub a_strides: [usize; MAX_RANK],
    /// Element stride of operand B along each output dimension (0 where B repeats).
    pub b_strides: [usize; MAX_RANK],
    /// Element counts of A, B and the output.
    pub sizes: [usize; 3],
}

fn pad_left(shape: &[usize]) -> [usize; MAX_RANK] {
    let mut d = [1usize; MAX_RANK];
    d[MAX_RANK - shape.len()..].copy_from_slice(shape);
    d
}

fn strides(dims: &[usize; MAX_RANK], out: &[usize; MAX_RANK]) -> [usize; MAX_RANK] {
    let mut s = [0usize; MAX_RANK];
    let mut acc = 1usize;
    for i in (0..MAX_RANK).rev() {
        s[i] = if dims[i] == 1 && out[i] != 1 { 0 } else { acc };
        acc *= dims[i];
    }
    s
}

impl Broadcast {
    /// Checks that `a` and `b` broadcast to `out` and computes the strides.
    pub fn new(a: &[usize], b: &[usize], out: &[usize]) -> Result<Self, &'static str> {
        if a.len() > MAX_RANK || b.len() > MAX_RANK || out.len() > MAX_RANK {
            return Err("broadcast: tensors of rank above 6 are not supported");
        }
        let (da, db, dout) = (pad_left(a), pad_left(b), pad_left(out));
        let mut sizes = [1usize; 3];
        for i in 0..MAX_RANK {
            let expect = match (da[i], db[i]) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => return Err("broadcast: input dimensions differ and neither is 1"),
            };
            if expect != dout[i] || out.len() < a.len().max(b.len()) {
                return Err("broadcast: output shape is not the broadcast of the input shapes");
            }
            for (s, d) in sizes.iter_mut().zip([da[i], db[i], dout[i]]) {
                *s = s.checked_mul(d).ok_or("broadcast: tensor size overflows")?;
            }
        }
        Ok(Self {
            out_dims: dout,
            a_strides: strides(&da, &dout),
            b_strides: strides(&db, &dout),
            sizes,
        })
    }

    /// Calls `f(a_index, b_index, out_index)` for every output element in row-major order.
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let d = &self.out_dims;
        let (sa, sb) = (&self.a_strides, &self.b_strides);
        let mut o = 0usize;
        for i0 in 0..d[0] {
            for i1 in 0..d[1] {
                for i2 in 0..d[2] {
                    for i3 in 0..d[3] {
                        for i4 in 0..d[4] {
                            for i5 in 0..d[5] {
                                let ia = i0 * sa[0]
                                    + i1 * sa[1]
                                    + i2 * sa[2]
                                    + i3 * sa[3]
                                    + i4 * sa[4]
                                    + i5 * sa[5];
                                let ib = i0 * sb[0]
                                    + i1 * sb[1]
                                    + i2 * sb[2]
                                    + i3 * sb[3]
                                    + i4 * sb[4]
                                    + i5 * sb[5];
                                f(ia, ib, o);
                                o += 1;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_by_hand() {
        // [2,1,3] with [4,1] -> [2,4,3].
        let b = Broadcast::new(&[2, 1, 3], &[4, 1], &[2, 4, 3]).unwrap();
        assert_eq!(b.sizes, [6, 4, 24]);
        assert_eq!(&b.a_strides[3..], &[3, 0, 1]);
        assert_eq!(&b.b_strides[3..], &[0, 1, 0]);
        let mut seen = [(0usize, 0usize); 24];
        b.for_each(|ia, ib, o| seen[o] = (ia, ib));
        // out[1][2][1] = a[1][0][1] (index 4), b[2][0] (index 2).
        assert_eq!(seen[12 + 6 + 1], (4, 2));
    }

    #[test]
    fn rejects_incompatible_shapes() {
        assert!(Broadcast::new(&[2, 3], &[3, 3], &[3, 3]).is_err());
        assert!(Broadcast::new(&[2, 3], &[3], &[2, 4]).is_err());
        assert!(Broadcast::new(&[1; 7], &[1], &[1; 7]).is_err());
        // Scalar (rank 0) operands broadcast to anything.
        assert!(Broadcast::new(&[], &[2, 2], &[2, 2]).is_ok());
    }
}
