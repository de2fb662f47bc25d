//! Operator records: the interpreter's prepared per-operator state, encoded as native-endian
//! 32-bit words in the arena's persistent region at init and decoded (no validation, no
//! flatbuffer reads, no float math) at each invoke.
//!
//! Why words rather than storing the `Copy` parameter structs themselves in the arena: a typed
//! write leaves the struct's padding bytes uninitialised, and the caller gets the arena back as
//! `&mut [u8]` once the interpreter is gone, where reading such a byte is undefined behaviour.
//! Encoding field by field needs no `unsafe` at all and lets records have variable length (a
//! RELU is a few words, a CONV_2D a few dozen).
//!
//! [`Record`] is implemented for the primitives, for fixed arrays, and (through the
//! [`record_struct!`] and [`record_enum!`] macros, which list every field so that a field added
//! to a struct and not to its list is a compile error) for the kernels' `*Params` types.

/// Appends words; in sizing mode (no buffer) only counts them. A value that does not fit 32 bits
/// (a `usize` of 4 GiB or more) or a full buffer marks the writer as failed.
pub(crate) struct Writer<'b> {
    buf: Option<&'b mut [u8]>,
    /// Words written (or counted) so far.
    pub(crate) len: usize,
    failed: bool,
}

impl<'b> Writer<'b> {
    /// A writer into `buf` (`None`: count only).
    pub(crate) fn new(buf: Option<&'b mut [u8]>) -> Self {
        Self {
            buf,
            len: 0,
            failed: false,
        }
    }

    /// Appends one word.
    #[inline]
    pub(crate) fn push(&mut self, w: u32) {
        if let Some(buf) = self.buf.as_deref_mut() {
            match buf.get_mut(4 * self.len..4 * self.len + 4) {
                Some(s) => s.copy_from_slice(&w.to_ne_bytes()),
                None => self.failed = true,
            }
        }
        self.len += 1;
    }

    /// Marks a value that cannot be encoded.
    pub(crate) fn fail(&mut self) {
        self.failed = true;
    }

    /// False when a value did not fit or the buffer was too short.
    pub(crate) fn ok(&self) -> bool {
        !self.failed
    }
}

/// Reads words back in the order they were written.
pub(crate) struct Reader<'b> {
    buf: &'b [u8],
    pos: usize,
}

impl<'b> Reader<'b> {
    /// A reader over the bytes a [`Writer`] filled.
    pub(crate) fn new(buf: &'b [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The next word; `None` past the end.
    #[inline]
    pub(crate) fn next(&mut self) -> Option<u32> {
        let s = self.buf.get(4 * self.pos..4 * self.pos + 4)?;
        self.pos += 1;
        Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// A value that round-trips through [`Writer`] / [`Reader`] exactly.
pub(crate) trait Record: Sized {
    /// Appends the value's words.
    fn put(&self, w: &mut Writer);
    /// Reads a value written by `put`; `None` on words `put` never writes.
    fn get(r: &mut Reader) -> Option<Self>;
}

impl Record for u32 {
    #[inline]
    fn put(&self, w: &mut Writer) {
        w.push(*self);
    }
    #[inline]
    fn get(r: &mut Reader) -> Option<Self> {
        r.next()
    }
}

impl Record for i32 {
    #[inline]
    fn put(&self, w: &mut Writer) {
        w.push(*self as u32);
    }
    #[inline]
    fn get(r: &mut Reader) -> Option<Self> {
        r.next().map(|v| v as i32)
    }
}

impl Record for i16 {
    #[inline]
    fn put(&self, w: &mut Writer) {
        w.push(*self as i32 as u32);
    }
    #[inline]
    fn get(r: &mut Reader) -> Option<Self> {
        i16::try_from(r.next()? as i32).ok()
    }
}

impl Record for i8 {
    #[inline]
    fn put(&self, w: &mut Writer) {
        w.push(*self as i32 as u32);
    }
    #[inline]
    fn get(r: &mut Reader) -> Option<Self> {
        i8::try_from(r.next()? as i32).ok()
    }
}

/// Stored as 32 bits: every size and dimension the planner accepts is below 4 GiB; a larger
/// value fails the writer (and so init), never truncates.
impl Record for usize {
    #[inline]
    fn put(&self, w: &mut Writer) {
        match u32::try_from(*self) {
            Ok(v) => w.push(v),
            Err(_) => w.fail(),
        }
    }
    #[inline]
    fn get(r: &mut Reader) -> Option<Self> {
        usize::try_from(r.next()?).ok()
    }
}

impl Record for bool {
    fn put(&self, w: &mut Writer) {
        w.push(*self as u32);
    }
    fn get(r: &mut Reader) -> Option<Self> {
        match r.next()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

/// Bit-exact (`to_bits`).
impl Record for f32 {
    fn put(&self, w: &mut Writer) {
        w.push(self.to_bits());
    }
    fn get(r: &mut Reader) -> Option<Self> {
        r.next().map(f32::from_bits)
    }
}

/// Bit-exact, low word first.
impl Record for f64 {
    fn put(&self, w: &mut Writer) {
        let b = self.to_bits();
        w.push(b as u32);
        w.push((b >> 32) as u32);
    }
    fn get(r: &mut Reader) -> Option<Self> {
        let lo = r.next()? as u64;
        let hi = r.next()? as u64;
        Some(f64::from_bits(lo | hi << 32))
    }
}

/// Two's complement, low word first.
impl Record for i64 {
    fn put(&self, w: &mut Writer) {
        let b = *self as u64;
        w.push(b as u32);
        w.push((b >> 32) as u32);
    }
    fn get(r: &mut Reader) -> Option<Self> {
        let lo = r.next()? as u64;
        let hi = r.next()? as u64;
        Some((lo | hi << 32) as i64)
    }
}

impl<T: Record + Copy + Default, const N: usize> Record for [T; N] {
    fn put(&self, w: &mut Writer) {
        for v in self {
            v.put(w);
        }
    }
    fn get(r: &mut Reader) -> Option<Self> {
        let mut a = [T::default(); N];
        for v in a.iter_mut() {
            *v = T::get(r)?;
        }
        Some(a)
    }
}

/// A tag word, then the value when present.
impl<T: Record> Record for Option<T> {
    fn put(&self, w: &mut Writer) {
        match self {
            None => w.push(0),
            Some(v) => {
                w.push(1);
                v.put(w);
            }
        }
    }
    fn get(r: &mut Reader) -> Option<Self> {
        match r.next()? {
            0 => Some(None),
            1 => Some(Some(T::get(r)?)),
            _ => None,
        }
    }
}

/// `impl Record` for a struct with named fields: the fields' words in the listed order. Every
/// field must be listed (the decoder builds the struct with a struct literal).
macro_rules! record_struct {
    ($t:path { $($f:ident),* $(,)? }) => {
        impl $crate::record::Record for $t {
            #[inline]
            fn put(&self, w: &mut $crate::record::Writer) {
                $( $crate::record::Record::put(&self.$f, w); )*
            }
            #[inline]
            fn get(r: &mut $crate::record::Reader) -> Option<Self> {
                Some(Self { $( $f: $crate::record::Record::get(r)?, )* })
            }
        }
    };
}

/// `impl Record` for an enum: a tag word (the listed literal), then the variant's fields. Every
/// variant's every field must be listed (patterns without `..`, struct-literal decoding).
macro_rules! record_enum {
    ($t:ident { $($tag:literal => $v:ident $({ $($f:ident),* $(,)? })?),* $(,)? }) => {
        impl $crate::record::Record for $t {
            #[inline]
            fn put(&self, w: &mut $crate::record::Writer) {
                match self {
                    $( $t::$v $({ $($f),* })? => {
                        w.push($tag);
                        $($( $crate::record::Record::put($f, w); )*)?
                    } )*
                }
            }
            #[inline]
            fn get(r: &mut $crate::record::Reader) -> Option<Self> {
                match r.next()? {
                    $( $tag => Some($t::$v $({ $( $f: $crate::record::Record::get(r)?, )* })?), )*
                    _ => None,
                }
            }
        }
    };
}

pub(crate) use {record_enum, record_struct};

// The kernels' parameter types. Listing them here (not in the kernels) keeps the reference
// kernels free of interpreter plumbing.
mod kernel_params {
    use crate::kernels::activations::{ReluKind, ReluParams};
    use crate::kernels::add::AddParams;
    use crate::kernels::broadcast::Broadcast;
    use crate::kernels::concatenation::ConcatParams;
    use crate::kernels::conv::ConvParams;
    use crate::kernels::depthwise_conv::DepthwiseConvParams;
    use crate::kernels::dequantize::DequantizeParams;
    use crate::kernels::fully_connected::FcParams;
    use crate::kernels::hard_swish::HardSwishParams;
    use crate::kernels::logistic::LogisticParams;
    use crate::kernels::mean::MeanParams;
    use crate::kernels::mul::MulParams;
    use crate::kernels::pack::PackParams;
    use crate::kernels::pad::PadParams;
    use crate::kernels::pooling::{PoolKind, PoolParams};
    use crate::kernels::quantize::{Int8Kind, QuantizeParams};
    use crate::kernels::reshape::ReshapeParams;
    use crate::kernels::shape::ShapeParams;
    use crate::kernels::softmax::SoftmaxParams;
    use crate::kernels::strided_slice::StridedSliceParams;
    use crate::quant::QuantizedMultiplier;

    record_struct!(QuantizedMultiplier { multiplier, shift });
    record_struct!(Broadcast {
        out_dims,
        a_strides,
        b_strides,
        sizes
    });
    record_struct!(ConvParams {
        batches,
        in_h,
        in_w,
        in_c,
        filter_h,
        filter_w,
        out_h,
        out_w,
        out_c,
        stride_h,
        stride_w,
        dilation_h,
        dilation_w,
        pad_top,
        pad_left,
        input_offset,
        output_offset,
        act_min,
        act_max,
    });
    record_struct!(DepthwiseConvParams {
        input_shape,
        filter_shape,
        output_shape,
        stride,
        dilation,
        pad,
        depth_multiplier,
        input_zero_point,
        output_zero_point,
        act_min,
        act_max,
    });
    record_struct!(FcParams {
        batches,
        accum_depth,
        out_depth,
        input_offset,
        output_offset,
        act_min,
        act_max,
    });
    record_struct!(AddParams {
        zero_points,
        a_multiplier,
        b_multiplier,
        output_multiplier,
        act_min,
        act_max,
        shape,
    });
    record_struct!(MulParams {
        zero_points,
        multiplier,
        act_min,
        act_max,
        shape,
    });
    record_struct!(ConcatParams {
        outer,
        inner,
        output_axis
    });
    record_struct!(DequantizeParams { scale, zero_point });
    record_struct!(HardSwishParams {
        input_zero_point,
        output_zero_point,
        output_multiplier,
        output_exponent,
        reluish_multiplier,
        reluish_exponent,
    });
    record_struct!(LogisticParams { table });
    record_struct!(MeanParams {
        dims,
        rank,
        reduced,
        count,
        input_zero_point,
        output_zero_point,
        multiplier,
    });
    record_struct!(PadParams {
        input_dims,
        output_dims,
        before,
        pad_value,
    });
    record_struct!(PoolParams {
        kind,
        input_shape,
        output_shape,
        filter,
        stride,
        pad,
        act_min,
        act_max,
    });
    record_struct!(ReshapeParams { bytes });
    record_struct!(SoftmaxParams {
        input_multiplier,
        input_left_shift,
        diff_min,
        outer,
        depth,
    });
    record_struct!(ReluParams {
        input_zero_point,
        output_zero_point,
        multiplier,
        act_min,
        act_max,
    });
    record_struct!(ShapeParams { dims, rank, elem });
    record_struct!(StridedSliceParams {
        rank,
        start,
        stride,
        count,
        in_step,
        elem,
    });
    record_struct!(PackParams {
        outer,
        inner_bytes,
        count
    });
    record_enum!(PoolKind {
        0 => Average,
        1 => Max,
    });
    record_enum!(Int8Kind {
        0 => Signed,
        1 => Unsigned,
    });
    record_enum!(ReluKind {
        0 => Relu,
        1 => ReluN1To1,
        2 => Relu6,
    });
    record_enum!(QuantizeParams {
        0 => Requantize { input, output, input_zero_point, output_zero_point, multiplier },
        1 => Affine { output, scale, zero_point },
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::pooling::{PoolKind, PoolParams};
    use crate::kernels::quantize::{Int8Kind, QuantizeParams};
    use crate::quant::QuantizedMultiplier;

    fn round_trip<T: Record + PartialEq + core::fmt::Debug>(v: T) -> usize {
        let mut count = Writer::new(None);
        v.put(&mut count);
        assert!(count.ok());
        let mut buf = std::vec![0u8; 4 * count.len];
        let mut w = Writer::new(Some(&mut buf));
        v.put(&mut w);
        assert!(w.ok());
        assert_eq!(w.len, count.len);
        let mut r = Reader::new(&buf);
        assert_eq!(T::get(&mut r).as_ref(), Some(&v));
        assert_eq!(r.next(), None, "decoder read every word");
        count.len
    }

    #[test]
    fn primitives_round_trip_bit_exactly() {
        assert_eq!(round_trip(-7i8), 1);
        assert_eq!(round_trip(i16::MIN), 1);
        assert_eq!(round_trip(i32::MIN), 1);
        assert_eq!(round_trip(u32::MAX as usize), 1);
        assert_eq!(round_trip(0.1f32), 1);
        // NaN payloads and the sign of zero survive (compared as bits).
        for v in [f32::from_bits(0x7fc0_1234), -0.0f32] {
            let mut buf = [0u8; 4];
            v.put(&mut Writer::new(Some(&mut buf)));
            let back = f32::get(&mut Reader::new(&buf)).unwrap();
            assert_eq!(back.to_bits(), v.to_bits());
        }
        assert_eq!(round_trip(f64::from_bits(0x8000_0000_0000_0001)), 2);
        assert_eq!(round_trip(i64::MIN + 1), 2);
        assert_eq!(round_trip(-1i64), 2);
        assert_eq!(round_trip(Some([3i8, -4, 5])), 4);
        assert_eq!(round_trip(None::<i32>), 1);
        assert_eq!(round_trip(true), 1);
    }

    #[test]
    fn params_round_trip() {
        let p = PoolParams {
            kind: PoolKind::Max,
            input_shape: [1, 9, 8, 3],
            output_shape: [1, 4, 4, 3],
            filter: [3, 2],
            stride: [2, 2],
            pad: [1, 0],
            act_min: -128,
            act_max: 127,
        };
        assert_eq!(round_trip(p), 1 + 4 + 4 + 2 + 2 + 2 + 2);
        round_trip(QuantizeParams::Requantize {
            input: Int8Kind::Unsigned,
            output: Int8Kind::Signed,
            input_zero_point: 128,
            output_zero_point: -3,
            multiplier: QuantizedMultiplier {
                multiplier: 1 << 30,
                shift: -2,
            },
        });
        round_trip(QuantizeParams::Affine {
            output: Int8Kind::Signed,
            scale: 0.1,
            zero_point: 4,
        });
    }

    #[test]
    fn shape_op_params_round_trip() {
        use crate::kernels::{pack, shape, strided_slice};
        let p = shape::prepare(&[1, 7, 7, 96], &[4], 4).unwrap();
        assert_eq!(round_trip(p), crate::model::MAX_RANK + 2);
        // x[1, ::-1, -3:] of a [2, 3, 4] tensor: a negative stride, start counted from the end.
        let spec = strided_slice::SliceSpec {
            begin: &[1, 0, -3],
            end: &[0, 0, 0],
            strides: &[1, -1, 1],
            begin_mask: 0b010,
            end_mask: 0b110,
            shrink_axis_mask: 0b001,
        };
        let p = strided_slice::prepare(&[2, 3, 4], &spec, &[3, 3], 1).unwrap();
        assert_eq!(p.stride[1], -1);
        let m = strided_slice::MAX_DIMS;
        assert_eq!(round_trip(p), 1 + 2 * m + 2 * m + m + m + 1);
        let p = pack::prepare(&[2, 2], 3, -1, &[2, 2, 3], 4).unwrap();
        assert_eq!(round_trip(p), 3);
    }

    #[test]
    fn oversized_values_fail_the_writer() {
        #[cfg(target_pointer_width = "64")]
        {
            let mut w = Writer::new(None);
            (1usize << 32).put(&mut w);
            assert!(!w.ok());
        }
        let mut buf = [0u8; 7];
        let mut w = Writer::new(Some(&mut buf));
        1u32.put(&mut w);
        assert!(w.ok());
        2u32.put(&mut w);
        assert!(!w.ok(), "second word does not fit 7 bytes");
    }

    #[test]
    fn bad_tags_and_short_input_decode_to_none() {
        let words = [7u32.to_ne_bytes(), 0u32.to_ne_bytes()].concat();
        assert_eq!(PoolKind::get(&mut Reader::new(&words)), None);
        assert_eq!(bool::get(&mut Reader::new(&words)), None);
        assert_eq!(f64::get(&mut Reader::new(&words[..4])), None);
        let too_big = 300u32.to_ne_bytes();
        assert_eq!(i8::get(&mut Reader::new(&too_big)), None);
    }
}
