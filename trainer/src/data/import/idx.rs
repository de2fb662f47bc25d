//! The IDX format of (Fashion-)MNIST: big-endian magic `0x0000_08NN` where `08` = unsigned byte
//! and `NN` = number of dimensions, then one big-endian u32 per dimension, then the data.

use anyhow::{bail, Result};

/// A decoded IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// Dimensions, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// Row-major data, `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

impl Idx {
    /// Parses an IDX byte array; `name` is used in error messages.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Idx> {
        let u32_at = |off: usize| -> Result<usize> {
            match bytes.get(off..off + 4) {
                Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize),
                None => bail!("{name}: truncated IDX header (byte {off})"),
            }
        };
        let magic = u32_at(0)?;
        if magic >> 8 != 0x08 {
            bail!("{name}: not an unsigned-byte IDX file (magic 0x{magic:08x})");
        }
        let ndim = magic & 0xff;
        if ndim == 0 || ndim > 4 {
            bail!("{name}: IDX with {ndim} dimensions is not supported (1 to 4)");
        }
        let dims = (0..ndim)
            .map(|i| u32_at(4 + 4 * i))
            .collect::<Result<Vec<_>>>()?;
        let header = 4 + 4 * ndim;
        let len = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| header.checked_add(n) == Some(bytes.len()));
        let Some(len) = len else {
            bail!(
                "{name}: IDX dimensions {dims:?} need {} data bytes after the header, file has {}",
                dims.iter().map(|&d| d as u128).product::<u128>(),
                bytes.len().saturating_sub(header)
            );
        };
        Ok(Idx {
            data: bytes.get(header..header + len).unwrap_or_default().to_vec(),
            dims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let mut b = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        b.extend([1, 2, 3, 4]);
        let idx = Idx::parse("x", &b).unwrap();
        assert_eq!(idx.dims, [2, 1, 2]);
        assert_eq!(idx.data, [1, 2, 3, 4]);
        let e = Idx::parse("x", &b[..19]).unwrap_err().to_string();
        assert_eq!(
            e,
            "x: IDX dimensions [2, 1, 2] need 4 data bytes after the header, file has 3"
        );
        assert!(Idx::parse("x", &[0, 0, 9, 1])
            .unwrap_err()
            .to_string()
            .contains("magic 0x00000901"));
        assert!(Idx::parse("x", &[0, 0, 8, 1, 0])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
    }
}
