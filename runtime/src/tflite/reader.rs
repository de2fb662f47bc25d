//! A zero-copy, bounds-checked flatbuffer reader: just enough of the flatbuffers wire format
//! (tables with vtables, vectors, strings, unions) to read TFLite models in place. Every offset,
//! length and vtable entry is checked against the buffer; nothing here can panic or read out of
//! bounds, whatever the bytes.
//!
//! All multi-byte values are little-endian and read with `from_le_bytes`, so data need not be
//! aligned (a model slice can start anywhere, e.g. inside a larger flash image).

use crate::error::{Error, Result};

#[inline]
fn malformed<T>(offset: usize, what: &'static str) -> Result<T> {
    Err(Error::Malformed { offset, what })
}

/// Reads `N` bytes at `pos`, or reports `what` as malformed at `pos`.
#[inline]
pub(crate) fn bytes_at<const N: usize>(
    buf: &[u8],
    pos: usize,
    what: &'static str,
) -> Result<[u8; N]> {
    match pos
        .checked_add(N)
        .and_then(|end| buf.get(pos..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
    {
        Some(a) => Ok(a),
        None => malformed(pos, what),
    }
}

#[inline]
pub(crate) fn u32_at(buf: &[u8], pos: usize, what: &'static str) -> Result<u32> {
    bytes_at::<4>(buf, pos, what).map(u32::from_le_bytes)
}

#[inline]
fn u16_at(buf: &[u8], pos: usize, what: &'static str) -> Result<u16> {
    bytes_at::<2>(buf, pos, what).map(u16::from_le_bytes)
}

/// Follows a `uoffset_t` stored at `pos` (relative to `pos` itself).
#[inline]
fn follow(buf: &[u8], pos: usize, what: &'static str) -> Result<usize> {
    let rel = u32_at(buf, pos, what)? as usize;
    match pos.checked_add(rel) {
        Some(t) if t < buf.len() => Ok(t),
        _ => malformed(pos, what),
    }
}

/// A table: its position and its (validated) vtable.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
    object_len: usize,
    what: &'static str,
}

impl<'a> Table<'a> {
    /// The root table of a flatbuffer (`uoffset` at byte 0).
    pub fn root(buf: &'a [u8], what: &'static str) -> Result<Self> {
        let pos = follow(buf, 0, what)?;
        Self::at(buf, pos, what)
    }

    /// The table starting at `pos`; checks its vtable and object extent.
    pub fn at(buf: &'a [u8], pos: usize, what: &'static str) -> Result<Self> {
        let soff = i32::from_le_bytes(bytes_at::<4>(buf, pos, what)?) as i64;
        let vtable = pos as i64 - soff;
        if vtable < 0 || vtable as u64 >= buf.len() as u64 {
            return malformed(pos, what);
        }
        let vtable = vtable as usize;
        let vtable_len = u16_at(buf, vtable, what)? as usize;
        let object_len = u16_at(buf, vtable + 2, what)? as usize;
        if vtable_len < 4 || !vtable_len.is_multiple_of(2) || vtable + vtable_len > buf.len() {
            return malformed(vtable, what);
        }
        if object_len < 4 || pos + object_len > buf.len() {
            return malformed(pos, what);
        }
        Ok(Self {
            buf,
            pos,
            vtable,
            vtable_len,
            object_len,
            what,
        })
    }

    /// Byte offset of the table in the model (for error messages).
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Absolute position of field `id` holding `size` bytes, if present; checks that the field
    /// lies inside the table object.
    fn field(&self, id: u16, size: usize) -> Result<Option<usize>> {
        let slot = 4 + 2 * id as usize;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        let off = u16_at(self.buf, self.vtable + slot, self.what)? as usize;
        if off == 0 {
            return Ok(None);
        }
        if off < 4 || off + size > self.object_len {
            return malformed(self.vtable + slot, self.what);
        }
        Ok(Some(self.pos + off))
    }

    fn scalar<const N: usize>(&self, id: u16) -> Result<Option<[u8; N]>> {
        match self.field(id, N)? {
            Some(p) => bytes_at::<N>(self.buf, p, self.what).map(Some),
            None => Ok(None),
        }
    }

    /// A `ubyte`/union-type field.
    pub fn u8(&self, id: u16, default: u8) -> Result<u8> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0]))
    }
    /// A `byte` field.
    pub fn i8(&self, id: u16, default: i8) -> Result<i8> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0] as i8))
    }
    /// A `bool` field.
    pub fn bool(&self, id: u16, default: bool) -> Result<bool> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0] != 0))
    }
    /// An `int` field.
    pub fn i32(&self, id: u16, default: i32) -> Result<i32> {
        Ok(self.scalar::<4>(id)?.map_or(default, i32::from_le_bytes))
    }
    /// A `uint` field.
    pub fn u32(&self, id: u16, default: u32) -> Result<u32> {
        Ok(self.scalar::<4>(id)?.map_or(default, u32::from_le_bytes))
    }
    /// A `ulong` field.
    pub fn u64(&self, id: u16, default: u64) -> Result<u64> {
        Ok(self.scalar::<8>(id)?.map_or(default, u64::from_le_bytes))
    }
    /// A `float` field.
    pub fn f32(&self, id: u16, default: f32) -> Result<f32> {
        Ok(self.scalar::<4>(id)?.map_or(default, f32::from_le_bytes))
    }

    /// A sub-table field (also used for union values).
    pub fn table(&self, id: u16, what: &'static str) -> Result<Option<Table<'a>>> {
        match self.field(id, 4)? {
            Some(p) => {
                let t = follow(self.buf, p, what)?;
                Table::at(self.buf, t, what).map(Some)
            }
            None => Ok(None),
        }
    }

    /// A vector field whose elements are `elem_size` bytes (4 for tables and strings).
    pub fn vector(
        &self,
        id: u16,
        elem_size: usize,
        what: &'static str,
    ) -> Result<Option<Vector<'a>>> {
        match self.field(id, 4)? {
            Some(p) => {
                let v = follow(self.buf, p, what)?;
                Vector::at(self.buf, v, elem_size, what).map(Some)
            }
            None => Ok(None),
        }
    }

    /// A vector field, or the empty vector when absent.
    pub fn vector_or_empty(
        &self,
        id: u16,
        elem_size: usize,
        what: &'static str,
    ) -> Result<Vector<'a>> {
        Ok(self
            .vector(id, elem_size, what)?
            .unwrap_or(Vector::empty(self.buf, elem_size, what)))
    }

    /// A string field (raw bytes, not required to be UTF-8).
    pub fn string(&self, id: u16, what: &'static str) -> Result<Option<&'a [u8]>> {
        Ok(self.vector(id, 1, what)?.map(|v| v.bytes()))
    }
}

/// A vector: element count and the position of its first element.
#[derive(Clone, Copy, Debug)]
pub struct Vector<'a> {
    buf: &'a [u8],
    start: usize,
    len: usize,
    elem_size: usize,
    what: &'static str,
}

impl<'a> Vector<'a> {
    fn empty(buf: &'a [u8], elem_size: usize, what: &'static str) -> Self {
        Self {
            buf,
            start: 0,
            len: 0,
            elem_size,
            what,
        }
    }

    /// The vector whose length prefix is at `pos`; checks that all elements are in bounds.
    pub fn at(buf: &'a [u8], pos: usize, elem_size: usize, what: &'static str) -> Result<Self> {
        let len = u32_at(buf, pos, what)? as usize;
        let start = pos + 4;
        match len
            .checked_mul(elem_size)
            .and_then(|n| n.checked_add(start))
        {
            Some(end) if end <= buf.len() => Ok(Self {
                buf,
                start,
                len,
                elem_size,
                what,
            }),
            _ => malformed(pos, what),
        }
    }

    /// Element count.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the vector has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Byte offset of the first element in the model.
    pub fn offset(&self) -> usize {
        self.start
    }

    /// The raw element bytes (in bounds by construction).
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
            .get(self.start..self.start + self.len * self.elem_size)
            .unwrap_or(&[])
    }

    fn elem<const N: usize>(&self, i: usize) -> Result<[u8; N]> {
        if i >= self.len || N != self.elem_size {
            return malformed(self.start, self.what);
        }
        bytes_at::<N>(self.buf, self.start + i * N, self.what)
    }

    /// Element `i` of a `[ubyte]`.
    pub fn u8(&self, i: usize) -> Result<u8> {
        self.elem::<1>(i).map(|b| b[0])
    }
    /// Element `i` of an `[int]`.
    pub fn i32(&self, i: usize) -> Result<i32> {
        self.elem::<4>(i).map(i32::from_le_bytes)
    }
    /// Element `i` of a `[float]`.
    pub fn f32(&self, i: usize) -> Result<f32> {
        self.elem::<4>(i).map(f32::from_le_bytes)
    }
    /// Element `i` of a `[long]`.
    pub fn i64(&self, i: usize) -> Result<i64> {
        self.elem::<8>(i).map(i64::from_le_bytes)
    }
    /// Element `i` of a vector of tables.
    pub fn table(&self, i: usize) -> Result<Table<'a>> {
        if i >= self.len || self.elem_size != 4 {
            return malformed(self.start, self.what);
        }
        let t = follow(self.buf, self.start + 4 * i, self.what)?;
        Table::at(self.buf, t, self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-assembled buffer: root -> table with one int field (id 0 = 7) and one vector of
    /// ints (id 1 = [1, 2]).
    fn tiny() -> [u8; 40] {
        let mut b = [0u8; 40];
        // root uoffset -> table at 16
        b[0..4].copy_from_slice(&16u32.to_le_bytes());
        // vtable at 4: len 8, object 12, field0 at +4, field1 at +8
        b[4..6].copy_from_slice(&8u16.to_le_bytes());
        b[6..8].copy_from_slice(&12u16.to_le_bytes());
        b[8..10].copy_from_slice(&4u16.to_le_bytes());
        b[10..12].copy_from_slice(&8u16.to_le_bytes());
        // table at 16: soffset = 16 - 4 = 12
        b[16..20].copy_from_slice(&12i32.to_le_bytes());
        b[20..24].copy_from_slice(&7i32.to_le_bytes());
        // vector uoffset at 24 -> 28
        b[24..28].copy_from_slice(&4u32.to_le_bytes());
        b[28..32].copy_from_slice(&2u32.to_le_bytes());
        b[32..36].copy_from_slice(&1i32.to_le_bytes());
        b[36..40].copy_from_slice(&2i32.to_le_bytes());
        b
    }

    #[test]
    fn reads_fields_and_vectors() {
        let b = tiny();
        let t = Table::root(&b, "t").unwrap();
        assert_eq!(t.i32(0, -1).unwrap(), 7);
        assert_eq!(t.i32(5, -1).unwrap(), -1); // beyond the vtable: default
        let v = t.vector(1, 4, "v").unwrap().unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v.i32(1).unwrap(), 2);
        assert!(v.i32(2).is_err());
    }

    #[test]
    fn rejects_out_of_bounds_structures() {
        let mut b = tiny();
        b[28..32].copy_from_slice(&1000u32.to_le_bytes()); // vector length too large
        let t = Table::root(&b, "t").unwrap();
        assert_eq!(
            t.vector(1, 4, "v").unwrap_err(),
            Error::Malformed {
                offset: 28,
                what: "v"
            }
        );
        let mut b = tiny();
        b[16..20].copy_from_slice(&(-100i32).to_le_bytes()); // vtable past the end
        assert!(Table::root(&b, "t").is_err());
        let mut b = tiny();
        b[8..10].copy_from_slice(&10u16.to_le_bytes()); // field beyond the object size
        assert!(Table::root(&b, "t").unwrap().i32(0, 0).is_err());
        assert!(Table::root(&b[..3], "t").is_err());
    }
}
