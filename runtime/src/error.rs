//! The one error type of kdruntime. Every variant names what is at fault (a byte offset and
//! structure in the flatbuffer, a tensor index and name, an operator index and opcode, or the
//! arena sizes) so a bad model can be diagnosed from the message alone.

use core::fmt;

/// Longest tensor-name prefix an error keeps (errors own their data: no lifetimes, no heap).
pub const NAME_CAPACITY: usize = 48;

/// A tensor name copied (and truncated) into the error, so errors do not borrow the model.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TensorName {
    bytes: [u8; NAME_CAPACITY],
    len: u8,
    truncated: bool,
}

impl TensorName {
    /// The empty name (tensor has no name, or it was unreadable).
    pub const EMPTY: TensorName = TensorName {
        bytes: [0; NAME_CAPACITY],
        len: 0,
        truncated: false,
    };

    /// Copies up to [`NAME_CAPACITY`] bytes of `name`.
    pub fn new(name: &[u8]) -> Self {
        let mut out = Self::EMPTY;
        let n = name.len().min(NAME_CAPACITY);
        if let (Some(dst), Some(src)) = (out.bytes.get_mut(..n), name.get(..n)) {
            dst.copy_from_slice(src);
        }
        out.len = n as u8;
        out.truncated = name.len() > NAME_CAPACITY;
        out
    }

    /// The stored bytes (possibly a truncated prefix of the real name).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len as usize).unwrap_or(&[])
    }
}

impl fmt::Debug for TensorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self)
    }
}

impl fmt::Display for TensorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.as_bytes() {
            // Names are meant to be ASCII; anything else is shown escaped, never trusted.
            if (0x20..0x7f).contains(&b) {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.truncated {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong between model bytes and an output tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The flatbuffer itself is malformed: `what` structure at byte `offset` is out of bounds
    /// or inconsistent.
    Malformed {
        /// Byte offset in the model where the bad structure (or reference to it) lies.
        offset: usize,
        /// Which structure or field was being read.
        what: &'static str,
    },
    /// The model is well-formed but outside what kdruntime runs (no subgraph, wrong file id...).
    UnsupportedModel {
        /// Why.
        reason: &'static str,
    },
    /// A tensor's description is invalid (shape, type, buffer size, quantisation).
    BadTensor {
        /// Tensor index in subgraph 0.
        index: usize,
        /// Tensor name, when readable.
        name: TensorName,
        /// What is wrong.
        reason: &'static str,
    },
    /// An operator kdruntime does not implement (or a custom operator).
    UnsupportedOperator {
        /// Operator index in execution order.
        op_index: usize,
        /// Builtin opcode number (-1 for custom operators).
        opcode: i32,
        /// Schema name of the opcode.
        name: &'static str,
        /// Operator version from the model's operator_codes.
        version: i32,
    },
    /// A supported operator whose tensors or options are invalid for its kernel.
    InvalidOperator {
        /// Operator index in execution order.
        op_index: usize,
        /// Builtin opcode number.
        opcode: i32,
        /// Schema name of the opcode.
        name: &'static str,
        /// Operator version.
        version: i32,
        /// What is wrong.
        reason: &'static str,
    },
    /// A supported operator whose tensor at `tensor` is invalid for its kernel (type, shape,
    /// quantisation, or missing constant data).
    InvalidOperand {
        /// Operator index in execution order.
        op_index: usize,
        /// Builtin opcode number.
        opcode: i32,
        /// Schema name of the opcode.
        name: &'static str,
        /// Operator version.
        version: i32,
        /// Index of the offending tensor in subgraph 0.
        tensor: usize,
        /// Its name, when readable.
        tensor_name: TensorName,
        /// What is wrong.
        reason: &'static str,
    },
    /// The caller's arena is smaller than the plan needs.
    ArenaTooSmall {
        /// Bytes the plan needs (equal to `Model::arena_size()`).
        needed: usize,
        /// Bytes given.
        given: usize,
    },
    /// The model has more tensors than `Model::arena_size` can plan with its fixed stack scratch.
    TooManyTensors {
        /// Tensors in subgraph 0.
        count: usize,
        /// The planner's limit.
        max: usize,
    },
    /// An input/output/tensor index asked for by the caller does not exist.
    IndexOutOfRange {
        /// Which kind of index (graph input, graph output, tensor, operator).
        what: &'static str,
        /// The index asked for.
        index: usize,
        /// How many there are.
        len: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed { offset, what } => {
                write!(f, "malformed model: {what} at byte offset {offset}")
            }
            Error::UnsupportedModel { reason } => write!(f, "unsupported model: {reason}"),
            Error::BadTensor {
                index,
                name,
                reason,
            } => write!(f, "tensor {index} (\"{name}\"): {reason}"),
            Error::UnsupportedOperator {
                op_index,
                opcode,
                name,
                version,
            } => write!(
                f,
                "operator {op_index}: unsupported opcode {name} ({opcode}) version {version}"
            ),
            Error::InvalidOperator {
                op_index,
                opcode,
                name,
                version,
                reason,
            } => write!(
                f,
                "operator {op_index} ({name}, opcode {opcode}, version {version}): {reason}"
            ),
            Error::InvalidOperand {
                op_index,
                opcode,
                name,
                version,
                tensor,
                tensor_name,
                reason,
            } => write!(
                f,
                "operator {op_index} ({name}, opcode {opcode}, version {version}): tensor {tensor} (\"{tensor_name}\"): {reason}"
            ),
            Error::ArenaTooSmall { needed, given } => write!(
                f,
                "arena too small: the plan needs {needed} bytes, {given} were given"
            ),
            Error::TooManyTensors { count, max } => write!(
                f,
                "model has {count} tensors; Model::arena_size plans at most {max}"
            ),
            Error::IndexOutOfRange { what, index, len } => {
                write!(f, "{what} index {index} out of range (there are {len})")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Shorthand used across the crate.
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_truncated_and_escaped() {
        let long = [b'a'; 60];
        let n = TensorName::new(&long);
        assert_eq!(n.as_bytes().len(), NAME_CAPACITY);
        assert!(std::format!("{n}").ends_with("..."));
        let odd = TensorName::new(b"x\n");
        assert_eq!(std::format!("{odd}"), "x\\x0a");
    }

    #[test]
    fn operand_message_names_operator_and_tensor() {
        let e = Error::InvalidOperand {
            op_index: 7,
            opcode: 0,
            name: "ADD",
            version: 2,
            tensor: 12,
            tensor_name: TensorName::new(b"block_3/add"),
            reason: "must be int8",
        };
        assert_eq!(
            std::format!("{e}"),
            "operator 7 (ADD, opcode 0, version 2): tensor 12 (\"block_3/add\"): must be int8"
        );
    }

    #[test]
    fn arena_message_states_sizes() {
        let e = Error::ArenaTooSmall {
            needed: 100,
            given: 10,
        };
        assert_eq!(
            std::format!("{e}"),
            "arena too small: the plan needs 100 bytes, 10 were given"
        );
    }
}
