//! RESHAPE and SQUEEZE: the data is unchanged, only the declared shape differs. The interpreter
//! gives each tensor its own arena slot, so eval is a copy.

/// Validated parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReshapeParams {
    /// Bytes to copy.
    pub bytes: usize,
}

/// Checks that input and output hold the same number of bytes.
pub fn prepare(input_bytes: usize, output_bytes: usize) -> Result<ReshapeParams, &'static str> {
    if input_bytes != output_bytes {
        return Err("input and output sizes differ");
    }
    Ok(ReshapeParams { bytes: input_bytes })
}

/// Copies the data.
pub fn eval(p: &ReshapeParams, input: &[u8], output: &mut [u8]) {
    if let (Some(o), Some(i)) = (output.get_mut(..p.bytes), input.get(..p.bytes)) {
        o.copy_from_slice(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_and_checks_sizes() {
        assert!(prepare(4, 5).is_err());
        let p = prepare(3, 3).unwrap();
        let mut out = [0u8; 3];
        eval(&p, &[1, 2, 3], &mut out);
        assert_eq!(out, [1, 2, 3]);
    }
}
