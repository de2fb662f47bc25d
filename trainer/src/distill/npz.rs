//! NumPy `.npz` exchange of teacher logits, for teams whose teachers live in Python.
//!
//! The seed's layout: a `.npz` (zip of `.npy` files, as `numpy.savez` writes) holding
//!
//! * `logits`: float32 `[N, C]` (one teacher or an ensemble), or `[N, K, C]` (per teacher);
//! * `indices`: int64 `[N]`, the rows' positions in `train.txt`.
//!
//! **Export** ([`export`]) writes a cache's samples in its id order: `[N, C]` when the cache has
//! one teacher; with several, the ensemble under the weights and averaging recorded in the cache
//! header (region filters are not applied: they need the per-sample regions of a training run),
//! or `[N, K, C]` with `per_teacher`. Entries are stored uncompressed, like `numpy.savez`.
//!
//! **Import** ([`import`]) reads `logits` as float16/32/64 `[N, C]` or `[N, K, C]` and `indices`
//! as any integer type, stored or deflated (`numpy.savez_compressed`); it checks the shapes,
//! that `C` equals the data set's class count, and that the indices are distinct positions of
//! the training list, then writes a cache whose rows are sorted by index. Its teacher hash is
//! SHA-256 of `npz:` and the `.npz` file's SHA-256 ([`npz_teacher_hash`]): training verifies such
//! a cache against the data list only ([`super::cache::LogitCache::verify`] with `None`).
//!
//! The `.npy` reader and writer are here (format version 1.0/2.0/3.0 headers, little-endian,
//! C order); see NumPy's `numpy.lib.format` for the specification.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use byteorder::{ByteOrder, LittleEndian as LE};
use half::f16;
use sha2::{Digest, Sha256};
use tch::Kind;
use zip::write::FileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::cache::{data_hash, CacheWriter, Header, LogitCache, Shard};
use super::teachers::{combine, file_sha256, Average};
use crate::data::{Dataset, Split};

/// The values of an array.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    /// Floats (any float dtype, converted).
    F32(Vec<f32>),
    /// Integers (any integer dtype, converted).
    I64(Vec<i64>),
}

/// One `.npy` array: shape (C order) and values.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: NpyData,
}

impl NpyArray {
    /// The `.npy` bytes: `<f4` or `<i8`, C order, version 1.0 (2.0 for a header over 64 KiB).
    pub fn to_npy(&self) -> Vec<u8> {
        let (descr, n) = match &self.data {
            NpyData::F32(v) => ("<f4", v.len()),
            NpyData::I64(v) => ("<i8", v.len()),
        };
        let shape = match self.shape[..] {
            [d] => format!("({d},)"),
            _ => format!(
                "({})",
                self.shape
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut dict =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        // Magic (6) + version (2) + length (2 or 4) + dict + '\n', padded to 64 with spaces.
        let long = dict.len() + 1 + 10 > u16::MAX as usize;
        let pre = if long { 12 } else { 10 };
        let total = (pre + dict.len() + 1).next_multiple_of(64);
        dict.extend(std::iter::repeat_n(' ', total - pre - dict.len() - 1));
        dict.push('\n');
        let mut b = Vec::with_capacity(total + 8 * n);
        b.extend_from_slice(b"\x93NUMPY");
        if long {
            b.extend_from_slice(&[2, 0]);
            b.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        } else {
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        }
        b.extend_from_slice(dict.as_bytes());
        match &self.data {
            NpyData::F32(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
            NpyData::I64(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
        }
        b
    }

    /// Parses `.npy` bytes; `name` is for errors.
    pub fn from_npy(bytes: &[u8], name: &str) -> Result<NpyArray> {
        ensure!(
            bytes.len() >= 10 && bytes.starts_with(b"\x93NUMPY"),
            "{name}: not a .npy array (bad magic)"
        );
        let (len, at) = match bytes[6] {
            1 => (LE::read_u16(&bytes[8..10]) as usize, 10),
            2 | 3 if bytes.len() >= 12 => (LE::read_u32(&bytes[8..12]) as usize, 12),
            v => bail!("{name}: .npy format version {v} is not supported"),
        };
        let dict = bytes
            .get(at..at + len)
            .with_context(|| format!("{name}: truncated .npy header"))?;
        let dict = std::str::from_utf8(dict).with_context(|| format!("{name}: header not text"))?;
        let descr = dict_value(dict, "descr")
            .and_then(|v| v.strip_prefix('\'').and_then(|v| v.split('\'').next()))
            .with_context(|| format!("{name}: header without 'descr': {dict}"))?;
        let fortran = dict_value(dict, "fortran_order")
            .with_context(|| format!("{name}: header without 'fortran_order': {dict}"))?;
        ensure!(
            fortran.starts_with("False"),
            "{name}: Fortran-order arrays are not supported (save with numpy.ascontiguousarray)"
        );
        let shape_txt = dict_value(dict, "shape")
            .and_then(|v| v.strip_prefix('('))
            .and_then(|v| v.split(')').next())
            .with_context(|| format!("{name}: header without 'shape': {dict}"))?;
        let shape = shape_txt
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<usize>()
                    .with_context(|| format!("{name}: shape {shape_txt:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let count: usize = shape.iter().product();
        let body = &bytes[at + len..];
        let (kind, size) = descr.split_at(descr.len().min(2));
        let size: usize = size
            .parse()
            .with_context(|| format!("{name}: dtype {descr:?} not supported"))?;
        ensure!(
            kind.starts_with('<') || kind.starts_with('|') || size == 1,
            "{name}: dtype {descr:?}: only little-endian arrays are supported"
        );
        ensure!(
            body.len() == count * size,
            "{name}: {} data bytes for shape {shape:?} of {descr} ({} expected)",
            body.len(),
            count * size
        );
        let ints = |f: fn(&[u8]) -> i64| NpyData::I64(body.chunks_exact(size).map(f).collect());
        let data = match (&kind[1..], size) {
            ("f", 2) => NpyData::F32(
                body.chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
            ),
            ("f", 4) => NpyData::F32(body.chunks_exact(4).map(LE::read_f32).collect()),
            ("f", 8) => NpyData::F32(
                body.chunks_exact(8)
                    .map(|b| LE::read_f64(b) as f32)
                    .collect(),
            ),
            ("i", 1) => ints(|b| i64::from(b[0] as i8)),
            ("u", 1) => ints(|b| i64::from(b[0])),
            ("i", 2) => ints(|b| i64::from(LE::read_i16(b))),
            ("u", 2) => ints(|b| i64::from(LE::read_u16(b))),
            ("i", 4) => ints(|b| i64::from(LE::read_i32(b))),
            ("u", 4) => ints(|b| i64::from(LE::read_u32(b))),
            ("i", 8) => ints(LE::read_i64),
            ("u", 8) => ints(|b| LE::read_u64(b).min(i64::MAX as u64) as i64),
            _ => bail!("{name}: dtype {descr:?} not supported (float or integer expected)"),
        };
        Ok(NpyArray { shape, data })
    }
}

/// The text after `'key':` in a `.npy` header dict.
fn dict_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let at = dict.find(&format!("'{key}'"))?;
    let rest = &dict[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// Writes `arrays` as a `.npz` (entries `NAME.npy`, stored uncompressed like `numpy.savez`).
pub fn write_npz(path: &Path, arrays: &[(&str, &NpyArray)]) -> Result<()> {
    let f = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    let mut z = ZipWriter::new(f);
    for (name, a) in arrays {
        let bytes = a.to_npy();
        let opts = FileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .large_file(bytes.len() as u64 >= u32::MAX as u64);
        z.start_file(format!("{name}.npy"), opts)
            .and_then(|()| z.write_all(&bytes).map_err(Into::into))
            .with_context(|| format!("{}: cannot write {name}.npy", path.display()))?;
    }
    z.finish()
        .with_context(|| format!("{}: cannot finish the zip", path.display()))?;
    Ok(())
}

/// Reads every `.npy` array of a `.npz`, by name without `.npy`.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, NpyArray>> {
    let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    read_npz_from(f, &path.display().to_string())
}

fn read_npz_from<R: Read + Seek>(r: R, name: &str) -> Result<BTreeMap<String, NpyArray>> {
    let mut z = ZipArchive::new(r).with_context(|| format!("{name}: not a .npz (zip) file"))?;
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut e = z
            .by_index(i)
            .with_context(|| format!("{name}: zip entry {i}"))?;
        let entry = e.name().to_string();
        let Some(key) = entry.strip_suffix(".npy") else {
            continue;
        };
        let mut bytes = Vec::with_capacity(e.size() as usize);
        e.read_to_end(&mut bytes)
            .with_context(|| format!("{name}: cannot read {entry}"))?;
        out.insert(
            key.to_string(),
            NpyArray::from_npy(&bytes, &format!("{name}: {entry}"))?,
        );
    }
    Ok(out)
}

/// What [`export`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Exported {
    /// Shape of `logits`.
    pub shape: Vec<usize>,
}

/// Exports `cache` to `out` (see the module docs).
pub fn export(cache: &LogitCache, out: &Path, per_teacher: bool) -> Result<Exported> {
    let h = cache.header();
    let ids = cache.ids();
    let positions: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
    let (n, k, c) = (ids.len(), h.teachers as usize, h.classes as usize);
    let mut values = Vec::with_capacity(n * if per_teacher { k } else { 1 } * c);
    // In slices, so an export of a large cache does not hold it twice as float32 tensors.
    for chunk in positions.chunks(4096) {
        let t = cache.logits_for(chunk)?;
        let t = if per_teacher || k == 1 {
            t
        } else {
            let w: Vec<f64> = h.weights.iter().map(|&w| f64::from(w)).collect();
            combine(&t, &w, h.average, h.mode, None)?.logits
        };
        values.extend(Vec::<f32>::try_from(t.to_kind(Kind::Float).reshape([-1]))?);
    }
    let shape = if per_teacher && k > 1 {
        vec![n, k, c]
    } else {
        vec![n, c]
    };
    let logits = NpyArray {
        shape: shape.clone(),
        data: NpyData::F32(values),
    };
    let indices = NpyArray {
        shape: vec![n],
        data: NpyData::I64(ids.iter().map(|&i| i64::from(i)).collect()),
    };
    write_npz(out, &[("logits", &logits), ("indices", &indices)])?;
    Ok(Exported { shape })
}

/// The teacher hash of a cache imported from `npz` (see the module docs).
pub fn npz_teacher_hash(npz: &Path) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"npz:");
    h.update(file_sha256(npz)?);
    Ok(h.finalize().into())
}

/// Imports `npz` as a cache of the training split of `ds` at `out` (see the module docs).
pub fn import(npz: &Path, ds: &Dataset, out: &Path) -> Result<Header> {
    let name = npz.display().to_string();
    let mut arrays = read_npz(npz)?;
    let logits = arrays
        .remove("logits")
        .with_context(|| format!("{name}: no array `logits`"))?;
    let indices = arrays
        .remove("indices")
        .with_context(|| format!("{name}: no array `indices`"))?;
    let NpyData::F32(values) = logits.data else {
        bail!("{name}: `logits` must be a float array");
    };
    let NpyData::I64(idx) = indices.data else {
        bail!("{name}: `indices` must be an integer array");
    };
    let (n, k, c) = match logits.shape[..] {
        [n, c] => (n, 1, c),
        [n, k, c] => (n, k, c),
        ref s => bail!("{name}: `logits` has shape {s:?}, expected [N, C] or [N, K, C]"),
    };
    ensure!(
        indices.shape == [n],
        "{name}: `indices` has shape {:?}, expected [{n}] (one per row of `logits`)",
        indices.shape
    );
    ensure!(
        c == ds.classes.len(),
        "{name}: `logits` has {c} classes, the data set {} ({})",
        ds.classes.len(),
        ds.root.display()
    );
    ensure!(
        k >= 1 && c >= 1,
        "{name}: `logits` has an empty axis: {:?}",
        logits.shape
    );
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "{name}: `logits` value {} (row {}) is not finite",
            values[i],
            i / (k * c)
        );
    }
    let len = ds.split(Split::Train).len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&r| idx[r]);
    for w in order.windows(2) {
        ensure!(
            idx[w[0]] != idx[w[1]],
            "{name}: index {} appears twice (rows {} and {})",
            idx[w[0]],
            w[0].min(w[1]),
            w[0].max(w[1])
        );
    }
    if let Some(&r) = order
        .iter()
        .find(|&&r| idx[r] < 0 || idx[r] as usize >= len)
    {
        bail!(
            "{name}: index {} (row {r}) is not a position of train.txt ({len} images)",
            idx[r]
        );
    }
    let header = Header {
        classes: c as u32,
        teachers: k as u32,
        list_len: len as u32,
        samples: n as u32,
        shard: Shard::ALL,
        average: Average::Logits,
        mode: ds.mode,
        data_hash: data_hash(&ds.root)?,
        teacher_hash: npz_teacher_hash(npz)?,
        weights: vec![1.0; k],
    };
    let ids: Vec<u32> = order.iter().map(|&r| idx[r] as u32).collect();
    let mut w = CacheWriter::create(out, header, &ids)?;
    for r in order {
        w.write(&values[r * k * c..(r + 1) * k * c])?;
    }
    w.finish()
}
