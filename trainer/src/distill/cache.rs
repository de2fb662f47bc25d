//! The teacher-logit cache: every teacher's logits over the training split, computed once
//! (in shards, on as many machines as wanted), stored as f16 and read memory-mapped during
//! training.
//!
//! # File format (version 1, every number little-endian)
//!
//! | offset      | size      | field                                                           |
//! |-------------|-----------|-----------------------------------------------------------------|
//! | 0           | 8         | magic `KDLOGITS`                                                |
//! | 8           | 4 (u32)   | format version, 1                                               |
//! | 12          | 4 (u32)   | header bytes `H`: offset of the payload, a multiple of 64       |
//! | 16          | 4 (u32)   | classes `C`                                                     |
//! | 20          | 4 (u32)   | teachers `K`                                                    |
//! | 24          | 4 (u32)   | `L`: images in the training list the ids index                  |
//! | 28          | 4 (u32)   | samples `N` in this file                                        |
//! | 32          | 4 (u32)   | shard index `i`                                                 |
//! | 36          | 4 (u32)   | shard count `n` (a merged or unsharded file: 0 of 1)            |
//! | 40          | 1 (u8)    | averaging recorded at compute time: 0 logits, 1 probs           |
//! | 41          | 1 (u8)    | mode: 0 multi-class, 1 multi-label                              |
//! | 42          | 6         | zero                                                            |
//! | 48          | 32        | data hash: SHA-256 of the `train.txt` bytes                     |
//! | 80          | 32        | teacher hash: [`TeacherSet::hash`]                              |
//! | 112         | 4K (f32)  | ensemble weights recorded at compute time                       |
//! | 112 + 4K    | 4N (u32)  | sample ids: positions in `train.txt`, strictly increasing, `< L`|
//! | ...         | ...       | zero padding up to `H`                                          |
//! | `H`         | 2NKC (f16)| logits, row-major `[N, K, C]`: sample, teacher, class           |
//!
//! The file is exactly `H + 2NKC` bytes. The hashes decide whether a cache may be used: the data
//! hash must equal the current `train.txt`'s and the teacher hash the current teacher set's
//! ([`LogitCache::verify`]; a mismatch is refused with the rebuild command). The recorded weights
//! and averaging only document the run and are what [`super::npz`] export uses for an ensemble;
//! training combines the per-teacher logits with its own configuration (changing weights or
//! averaging needs no recomputation).
//!
//! # Shards
//!
//! Shard `i` of `n` holds the samples whose list position `p` has `p % n == i` (strided, so
//! every shard sees the same mix of the list and the shards' sizes differ by at most one).
//! [`Shard::resolve`] picks the shard from `--shard i/n`, else from a Slurm job array
//! (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`, with `SLURM_ARRAY_TASK_MIN` (default 0) and
//! `SLURM_ARRAY_TASK_STEP` (default 1) so `--array=1-8` works too), else from an indexed
//! Kubernetes Job (`JOB_COMPLETION_INDEX`, whose count Kubernetes does not export: it comes from
//! `--shard-count` or `KDEDGE_SHARD_COUNT`), else 0/1. A shard of a sharded run is written to
//! `OUT.I-of-N` ([`shard_path`]); [`merge`] joins the shard files into one cache, checking
//! that their headers agree and that every sample appears exactly once.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use byteorder::{ByteOrder, LittleEndian as LE, ReadBytesExt, WriteBytesExt};
use half::f16;
use memmap2::Mmap;
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

use super::teachers::{Average, TeacherSet};
use crate::data::{Dataset, Mode, Split, SplitList};
use crate::pipeline::{Loader, LoaderOptions};

/// First bytes of a cache file.
pub const MAGIC: [u8; 8] = *b"KDLOGITS";
/// The format version written and read.
pub const VERSION: u32 = 1;
/// Bytes before the per-teacher weights.
const FIXED: usize = 112;
/// Ids listed in an error message.
const SHOW: usize = 10;

/// One shard of the training list: positions `p` with `p % count == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// `i`, in `[0, count)`.
    pub index: u32,
    /// `n >= 1`.
    pub count: u32,
}

/// Where [`Shard::resolve`] found the shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSource {
    /// `--shard i/n`.
    Flag,
    /// A Slurm job array.
    Slurm,
    /// An indexed Kubernetes Job.
    Kubernetes,
    /// None of them: the whole list.
    Default,
}

impl Shard {
    /// The whole list.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// A checked shard.
    pub fn new(index: u32, count: u32) -> Result<Shard> {
        if count == 0 || index >= count {
            bail!("shard {index}/{count}: need 0 <= index < count");
        }
        Ok(Shard { index, count })
    }

    /// Parses `i/n`.
    pub fn parse(s: &str) -> Result<Shard> {
        let (i, n) = s
            .split_once('/')
            .with_context(|| format!("--shard {s:?}: expected INDEX/COUNT, e.g. 0/8"))?;
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .with_context(|| format!("--shard {s:?}: {t:?} is not a number"))
        };
        Shard::new(num(i)?, num(n)?).with_context(|| format!("--shard {s:?}"))
    }

    /// The shard to compute (see the module docs for the order): `flag` is `--shard`,
    /// `count` is `--shard-count`, `env` reads an environment variable.
    pub fn resolve(
        flag: Option<&str>,
        count: Option<u32>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Shard, ShardSource)> {
        if let Some(f) = flag {
            let s = Shard::parse(f)?;
            if let Some(c) = count.filter(|&c| c != s.count) {
                bail!("--shard {f} and --shard-count {c} disagree");
            }
            return Ok((s, ShardSource::Flag));
        }
        let int = |name: &str| -> Result<Option<u32>> {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .with_context(|| format!("{name}={v:?}: not a non-negative integer"))
                })
                .transpose()
        };
        if let Some(id) = int("SLURM_ARRAY_TASK_ID")? {
            let n = int("SLURM_ARRAY_TASK_COUNT")?
                .context("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")?;
            let min = int("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = int("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            ensure!(
                id >= min && (id - min) % step == 0,
                "SLURM_ARRAY_TASK_ID={id} is not SLURM_ARRAY_TASK_MIN={min} plus a multiple of \
                 SLURM_ARRAY_TASK_STEP={step}"
            );
            let s = Shard::new((id - min) / step, n).context("from the Slurm array variables")?;
            return Ok((s, ShardSource::Slurm));
        }
        if let Some(i) = int("JOB_COMPLETION_INDEX")? {
            let n = match count {
                Some(c) => c,
                None => int("KDEDGE_SHARD_COUNT")?.context(
                    "JOB_COMPLETION_INDEX is set (indexed Kubernetes Job) but the shard count is \
                     not: pass --shard-count N or set KDEDGE_SHARD_COUNT to the Job's completions",
                )?,
            };
            let s = Shard::new(i, n).context("from JOB_COMPLETION_INDEX")?;
            return Ok((s, ShardSource::Kubernetes));
        }
        match count {
            Some(c) if c != 1 => bail!(
                "--shard-count {c} without a shard index (--shard, SLURM_ARRAY_TASK_ID or \
                 JOB_COMPLETION_INDEX)"
            ),
            _ => Ok((Shard::ALL, ShardSource::Default)),
        }
    }

    /// Whether list position `p` belongs to the shard.
    pub fn contains(&self, p: usize) -> bool {
        p % self.count as usize == self.index as usize
    }

    /// The shard's positions in a list of `len` images.
    pub fn ids(&self, len: usize) -> Vec<u32> {
        (self.index as usize..len)
            .step_by(self.count as usize)
            .map(|p| p as u32)
            .collect()
    }
}

/// The file a shard writes for `--out out`: `out` itself for 0/1, else `out.I-of-N`.
pub fn shard_path(out: &Path, shard: Shard) -> PathBuf {
    if shard == Shard::ALL {
        return out.to_path_buf();
    }
    let mut s = out.as_os_str().to_owned();
    s.push(format!(".{}-of-{}", shard.index, shard.count));
    PathBuf::from(s)
}

/// SHA-256 of the data set's `train.txt` bytes.
pub fn data_hash(data_dir: &Path) -> Result<[u8; 32]> {
    let p = data_dir.join(Split::Train.file_name());
    let bytes = std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))?;
    Ok(Sha256::digest(&bytes).into())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cache header (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// `C`.
    pub classes: u32,
    /// `K`.
    pub teachers: u32,
    /// `L`: images in the training list.
    pub list_len: u32,
    /// `N`: samples in the file.
    pub samples: u32,
    /// Which shard the file holds (0/1 when whole or merged).
    pub shard: Shard,
    /// Averaging recorded at compute time.
    pub average: Average,
    /// The data set's mode.
    pub mode: Mode,
    /// SHA-256 of `train.txt`.
    pub data_hash: [u8; 32],
    /// [`TeacherSet::hash`].
    pub teacher_hash: [u8; 32],
    /// Ensemble weights recorded at compute time (`K` of them).
    pub weights: Vec<f32>,
}

impl Header {
    /// Offset of the payload for this header.
    pub fn header_bytes(&self) -> usize {
        (FIXED + 4 * self.weights.len() + 4 * self.samples as usize).next_multiple_of(64)
    }

    /// Payload bytes (`2NKC`).
    pub fn payload_bytes(&self) -> usize {
        2 * self.samples as usize * self.teachers as usize * self.classes as usize
    }

    /// The header and ids, padded to [`Header::header_bytes`].
    fn encode(&self, ids: &[u32]) -> Result<Vec<u8>> {
        ensure!(
            ids.len() == self.samples as usize && self.weights.len() == self.teachers as usize,
            "cache header: {} ids for {} samples, {} weights for {} teachers",
            ids.len(),
            self.samples,
            self.weights.len(),
            self.teachers
        );
        let hb = self.header_bytes();
        let mut b = Vec::with_capacity(hb);
        b.extend_from_slice(&MAGIC);
        for v in [
            VERSION,
            u32::try_from(hb).context("cache header: more than 4 GiB of ids")?,
            self.classes,
            self.teachers,
            self.list_len,
            self.samples,
            self.shard.index,
            self.shard.count,
        ] {
            b.write_u32::<LE>(v)?;
        }
        b.push(match self.average {
            Average::Logits => 0,
            Average::Probs => 1,
        });
        b.push(match self.mode {
            Mode::MultiClass => 0,
            Mode::MultiLabel => 1,
        });
        b.extend_from_slice(&[0; 6]);
        b.extend_from_slice(&self.data_hash);
        b.extend_from_slice(&self.teacher_hash);
        for &w in &self.weights {
            b.write_f32::<LE>(w)?;
        }
        for &id in ids {
            b.write_u32::<LE>(id)?;
        }
        b.resize(hb, 0);
        Ok(b)
    }

    /// Parses and checks a header at the start of `bytes` (the whole file); `name` is for errors.
    fn decode(bytes: &[u8], name: &str) -> Result<Header> {
        ensure!(
            bytes.len() >= FIXED,
            "{name}: {} bytes, too short for a logit cache header ({FIXED})",
            bytes.len()
        );
        ensure!(
            bytes[..8] == MAGIC,
            "{name}: not a kdedge logit cache (magic {:?}, expected {:?})",
            String::from_utf8_lossy(&bytes[..8]),
            String::from_utf8_lossy(&MAGIC)
        );
        let mut r = &bytes[8..];
        let version = r.read_u32::<LE>()?;
        ensure!(
            version == VERSION,
            "{name}: format version {version}; this kdtrain reads version {VERSION} (recompute \
             the cache)"
        );
        let hb = r.read_u32::<LE>()? as usize;
        let (classes, teachers, list_len, samples) = (
            r.read_u32::<LE>()?,
            r.read_u32::<LE>()?,
            r.read_u32::<LE>()?,
            r.read_u32::<LE>()?,
        );
        let (si, sn) = (r.read_u32::<LE>()?, r.read_u32::<LE>()?);
        let shard = Shard::new(si, sn).with_context(|| format!("{name}: header"))?;
        let mut rest = [0u8; 8];
        r.read_exact(&mut rest)?;
        let average = match rest[0] {
            0 => Average::Logits,
            1 => Average::Probs,
            a => bail!("{name}: averaging code {a} (expected 0 logits or 1 probs)"),
        };
        let mode = match rest[1] {
            0 => Mode::MultiClass,
            1 => Mode::MultiLabel,
            m => bail!("{name}: mode code {m} (expected 0 multi-class or 1 multi-label)"),
        };
        let mut data_hash = [0u8; 32];
        let mut teacher_hash = [0u8; 32];
        r.read_exact(&mut data_hash)?;
        r.read_exact(&mut teacher_hash)?;
        ensure!(
            classes >= 1 && teachers >= 1,
            "{name}: {classes} classes, {teachers} teachers"
        );
        ensure!(
            samples <= list_len,
            "{name}: {samples} samples but a list of {list_len}"
        );
        let mut h = Header {
            classes,
            teachers,
            list_len,
            samples,
            shard,
            average,
            mode,
            data_hash,
            teacher_hash,
            weights: Vec::new(),
        };
        let weights_end = FIXED + 4 * teachers as usize;
        let want_hb = (weights_end + 4 * samples as usize).next_multiple_of(64);
        ensure!(
            hb == want_hb && bytes.len() >= hb,
            "{name}: header size {hb}, expected {want_hb} for {teachers} teachers and {samples} \
             samples (file of {} bytes)",
            bytes.len()
        );
        h.weights = bytes[FIXED..weights_end]
            .chunks_exact(4)
            .map(LE::read_f32)
            .collect();
        if let Some(w) = h.weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
            bail!("{name}: recorded teacher weight {w} is not finite and > 0");
        }
        let want = hb as u64 + h.payload_bytes() as u64;
        ensure!(
            bytes.len() as u64 == want,
            "{name}: {} bytes, expected {want} ({hb} header + {samples} x {teachers} x {classes} \
             f16 logits): truncated or not a cache",
            bytes.len()
        );
        Ok(h)
    }

    /// Human-readable summary (`kdtrain logits info`).
    pub fn describe(&self) -> String {
        format!(
            "format: kdedge logit cache v{VERSION}\nclasses: {}\nteachers: {}\nsamples: {} of a \
             training list of {}\nshard: {}/{}\nrecorded weights: {:?}\nrecorded averaging: {}\nmode: {}\n\
             data hash (train.txt): {}\nteacher hash: {}\n",
            self.classes,
            self.teachers,
            self.samples,
            self.list_len,
            self.shard.index,
            self.shard.count,
            self.weights,
            self.average.name(),
            self.mode.name(),
            hex(&self.data_hash),
            hex(&self.teacher_hash)
        )
    }
}

/// Writes a cache file row by row: the header first, then `[K, C]` rows in id order; the file
/// appears at its path only when [`CacheWriter::finish`] succeeds (temporary + rename).
pub struct CacheWriter {
    out: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    header: Header,
    rows: usize,
}

impl CacheWriter {
    /// Starts `path` with `header` and the sample `ids` (strictly increasing, `< list_len`).
    pub fn create(path: &Path, header: Header, ids: &[u32]) -> Result<CacheWriter> {
        check_ids(ids, header.list_len, &path.display().to_string())?;
        let bytes = header.encode(ids)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let f = File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        let mut out = BufWriter::new(f);
        out.write_all(&bytes)
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        Ok(CacheWriter {
            out,
            tmp,
            path: path.to_path_buf(),
            header,
            rows: 0,
        })
    }

    /// Appends samples: `values` holds `B * K * C` logits, row-major `[B, K, C]`.
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        let per = (self.header.teachers * self.header.classes) as usize;
        ensure!(
            values.len().is_multiple_of(per),
            "cache rows: {} values is not a multiple of K x C = {per}",
            values.len()
        );
        let b = values.len() / per;
        ensure!(
            self.rows + b <= self.header.samples as usize,
            "cache rows: {} more than the {} samples of the header",
            self.rows + b - self.header.samples as usize,
            self.header.samples
        );
        let mut buf = vec![0u8; 2 * values.len()];
        for (o, v) in buf.chunks_exact_mut(2).zip(values) {
            o.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
        }
        self.out
            .write_all(&buf)
            .with_context(|| format!("{}: cannot write", self.tmp.display()))?;
        self.rows += b;
        Ok(())
    }

    /// Appends rows already encoded as little-endian f16 (merging).
    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let per = 2 * (self.header.teachers * self.header.classes) as usize;
        self.out
            .write_all(bytes)
            .with_context(|| format!("{}: cannot write", self.tmp.display()))?;
        self.rows += bytes.len() / per;
        Ok(())
    }

    /// Checks that every sample was written and moves the file into place.
    pub fn finish(self) -> Result<Header> {
        ensure!(
            self.rows == self.header.samples as usize,
            "{}: {} of {} samples written",
            self.path.display(),
            self.rows,
            self.header.samples
        );
        let f = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("{}: cannot write", self.tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("{}: cannot sync", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("{}: cannot rename into place", self.path.display()))?;
        Ok(self.header)
    }
}

/// Ids strictly increasing and below `len`.
fn check_ids(ids: &[u32], len: u32, name: &str) -> Result<()> {
    for (i, w) in ids.windows(2).enumerate() {
        ensure!(
            w[0] < w[1],
            "{name}: sample ids not strictly increasing at entry {}: {} then {}",
            i + 1,
            w[0],
            w[1]
        );
    }
    if let Some(&last) = ids.last() {
        ensure!(
            last < len,
            "{name}: sample id {last} beyond the list of {len}"
        );
    }
    Ok(())
}

/// An open, memory-mapped cache file.
pub struct LogitCache {
    path: PathBuf,
    map: Mmap,
    header: Header,
    ids_at: usize,
    payload_at: usize,
    /// `row[p]`: the file row of list position `p`, or `u32::MAX`.
    row: Vec<u32>,
}

impl LogitCache {
    /// Maps `path` and checks its header, size and ids.
    pub fn open(path: &Path) -> Result<LogitCache> {
        let name = path.display().to_string();
        let f = File::open(path).with_context(|| format!("{name}: cannot open"))?;
        // SAFETY: the file is only read; a cache must not be rewritten while training reads it
        // (writers create a temporary and rename it, which leaves an open map intact).
        let map = unsafe { Mmap::map(&f) }.with_context(|| format!("{name}: cannot map"))?;
        let header = Header::decode(&map, &name)?;
        let ids_at = FIXED + 4 * header.teachers as usize;
        let n = header.samples as usize;
        let ids: Vec<u32> = map[ids_at..ids_at + 4 * n]
            .chunks_exact(4)
            .map(LE::read_u32)
            .collect();
        check_ids(&ids, header.list_len, &name)?;
        let mut row = vec![u32::MAX; header.list_len as usize];
        for (r, &id) in ids.iter().enumerate() {
            row[id as usize] = r as u32;
        }
        Ok(LogitCache {
            path: path.to_path_buf(),
            payload_at: header.header_bytes(),
            map,
            header,
            ids_at,
            row,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sample ids, in file order.
    pub fn ids(&self) -> Vec<u32> {
        self.map[self.ids_at..self.ids_at + 4 * self.header.samples as usize]
            .chunks_exact(4)
            .map(LE::read_u32)
            .collect()
    }

    /// Refuses a stale cache: the data hash must equal `data_hash` (the current `train.txt`),
    /// and the teacher hash `teacher_hash` unless it is `None` (a cache whose teachers are
    /// taken as given, e.g. imported from NumPy). The error says which hash differs and how
    /// to rebuild.
    pub fn verify(&self, data_hash: &[u8; 32], teacher_hash: Option<&[u8; 32]>) -> Result<()> {
        let p = self.path.display();
        if &self.header.data_hash != data_hash {
            bail!(
                "{p}: stale teacher-logit cache: the training list hash differs (cache {}, \
                 train.txt now {}): train.txt changed since the cache was computed; rebuild it \
                 with `kdtrain logits compute --data-dir ... --out {p}` (or re-import the .npz)",
                hex(&self.header.data_hash),
                hex(data_hash)
            );
        }
        if let Some(t) = teacher_hash.filter(|t| **t != self.header.teacher_hash) {
            bail!(
                "{p}: stale teacher-logit cache: the teacher set hash differs (cache {}, current \
                 teachers {}): a teacher's architecture, weights file, input or order changed; \
                 rebuild it with `kdtrain logits compute --teacher ... --out {p}`",
                hex(&self.header.teacher_hash),
                hex(t)
            );
        }
        Ok(())
    }

    /// Fails unless the cache holds every position of its list (a merged or unsharded cache).
    pub fn check_complete(&self) -> Result<()> {
        let missing: Vec<usize> = (0..self.row.len())
            .filter(|&p| self.row[p] == u32::MAX)
            .collect();
        ensure!(
            missing.is_empty(),
            "{}: {} of {} samples missing (shard {}/{}; merge the shards with `kdtrain logits \
             merge`), first: {:?}",
            self.path.display(),
            missing.len(),
            self.row.len(),
            self.header.shard.index,
            self.header.shard.count,
            &missing[..missing.len().min(SHOW)]
        );
        Ok(())
    }

    /// The raw f16 bytes of file row `r` (`[K, C]`).
    fn raw_row(&self, r: usize) -> &[u8] {
        let per = 2 * (self.header.teachers * self.header.classes) as usize;
        let at = self.payload_at + r * per;
        &self.map[at..at + per]
    }

    /// `[B, K, C]` float32 logits (CPU) of list positions `positions` (e.g. [`crate::pipeline::Batch::indices`]).
    pub fn logits_for(&self, positions: &[usize]) -> Result<Tensor> {
        let (k, c) = (self.header.teachers as usize, self.header.classes as usize);
        let mut v = Vec::with_capacity(positions.len() * k * c);
        for &p in positions {
            let r = self.row.get(p).copied().unwrap_or(u32::MAX);
            ensure!(
                r != u32::MAX,
                "{}: training sample {p} is not in the cache (it holds {} of {} samples, shard \
                 {}/{})",
                self.path.display(),
                self.header.samples,
                self.header.list_len,
                self.header.shard.index,
                self.header.shard.count
            );
            v.extend(
                self.raw_row(r as usize)
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
            );
        }
        Ok(Tensor::from_slice(&v).view([positions.len() as i64, k as i64, c as i64]))
    }
}

/// What [`compute`] wrote.
#[derive(Debug)]
pub struct Computed {
    /// The file written.
    pub path: PathBuf,
    /// Its header.
    pub header: Header,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Computes shard `shard` of every teacher's logits over the training split of `ds` (whose
/// folder's `train.txt` the data hash covers) and writes it to [`shard_path`]`(out, shard)`.
/// Each teacher runs in evaluation mode on the evaluation input (no augmentation) at its own
/// size and normalisation, through a [`Loader`] over the shard's images.
pub fn compute(
    teachers: &TeacherSet,
    ds: &Dataset,
    shard: Shard,
    batch_size: usize,
    workers: usize,
    out: &Path,
) -> Result<Computed> {
    let started = std::time::Instant::now();
    let entries = ds.split(Split::Train);
    let list_len = u32::try_from(entries.len()).context("more than 2^32 training images")?;
    let ids = shard.ids(entries.len());
    // The shard's images as a data set of their own, so the loader's batches, prefetch and
    // parallel decoding serve it unchanged; batch positions map back through `ids`.
    let mut sub = ds.clone();
    sub.splits = vec![SplitList {
        split: Split::Train,
        entries: ids.iter().map(|&p| entries[p as usize].clone()).collect(),
    }];
    let header = Header {
        classes: u32::try_from(teachers.num_classes())?,
        teachers: u32::try_from(teachers.len())?,
        list_len,
        samples: ids.len() as u32,
        shard,
        average: teachers.average(),
        mode: teachers.mode(),
        data_hash: data_hash(&ds.root)?,
        teacher_hash: teachers.hash(),
        weights: teachers.weights().iter().map(|&w| w as f32).collect(),
    };
    let path = shard_path(out, shard);
    let mut writer = CacheWriter::create(&path, header, &ids)?;
    let (views, of) = teachers.input_views();
    let loaders = views
        .iter()
        .map(|&(size, norm)| {
            let mut o = LoaderOptions::new(size as usize, batch_size, norm);
            o.workers = workers;
            Loader::new(&sub, Split::Train, o)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut epochs: Vec<_> = loaders.iter().map(|l| l.epoch(0)).collect();
    loop {
        let batches = epochs
            .iter_mut()
            .map(|e| e.next().transpose())
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = batches.first().and_then(Option::as_ref) else {
            break;
        };
        let rows = first.indices.len() as i64;
        let mut per = Vec::with_capacity(teachers.len());
        for (k, &v) in of.iter().enumerate() {
            let b = batches[v]
                .as_ref()
                .context("teacher input views out of step")?;
            per.push(teachers.member_logits(k, &b.images)?);
        }
        let block = Tensor::stack(&per, 1)
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float);
        let values = Vec::<f32>::try_from(block.reshape([-1]))?;
        ensure!(
            values.len() as i64 == rows * (teachers.len() * teachers.num_classes()) as i64,
            "teacher logits: unexpected size"
        );
        writer.write(&values)?;
    }
    let header = writer.finish()?;
    Ok(Computed {
        path,
        header,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Joins shard files into one cache at `out` (shard 0/1, ids sorted). Every file must have the
/// same classes, teachers, list length, hashes, recorded weights and averaging, and every
/// list position must appear in exactly one of them: errors list the first missing or
/// duplicated ids.
pub fn merge(out: &Path, shards: &[PathBuf]) -> Result<Header> {
    ensure!(!shards.is_empty(), "merge: no shard file given");
    let caches = shards
        .iter()
        .map(|p| LogitCache::open(p))
        .collect::<Result<Vec<_>>>()?;
    let h0 = &caches[0].header;
    for c in &caches[1..] {
        let h = &c.header;
        let differs = [
            ("classes", h.classes != h0.classes),
            ("teachers", h.teachers != h0.teachers),
            ("training list length", h.list_len != h0.list_len),
            ("data hash (train.txt)", h.data_hash != h0.data_hash),
            ("teacher hash", h.teacher_hash != h0.teacher_hash),
            ("recorded weights", h.weights != h0.weights),
            ("recorded averaging", h.average != h0.average),
            ("mode", h.mode != h0.mode),
        ];
        if let Some((what, _)) = differs.iter().find(|d| d.1) {
            bail!(
                "merge: {} and {} differ in their {what}: they are not shards of one computation",
                caches[0].path.display(),
                c.path.display()
            );
        }
    }
    // Owner of each list position: (cache, row).
    let mut owner: Vec<Option<(usize, u32)>> = vec![None; h0.list_len as usize];
    let mut dups: Vec<String> = Vec::new();
    for (ci, c) in caches.iter().enumerate() {
        for (r, id) in c.ids().into_iter().enumerate() {
            match owner[id as usize] {
                Some((prev, _)) => {
                    if dups.len() < SHOW {
                        dups.push(format!(
                            "{id} (in {} and {})",
                            caches[prev].path.display(),
                            c.path.display()
                        ));
                    }
                    if dups.len() == SHOW {
                        dups.push("...".into());
                    }
                }
                None => owner[id as usize] = Some((ci, r as u32)),
            }
        }
    }
    let total: usize = caches.iter().map(|c| c.header.samples as usize).sum();
    let overlap = total - owner.iter().filter(|o| o.is_some()).count();
    ensure!(
        overlap == 0,
        "merge: {overlap} sample id(s) appear in more than one file (overlapping shards), first: {}",
        dups.join(", ")
    );
    let missing: Vec<usize> = (0..owner.len()).filter(|&p| owner[p].is_none()).collect();
    ensure!(
        missing.is_empty(),
        "merge: {} of {} sample id(s) missing (a shard not computed or not given), first: {:?}",
        missing.len(),
        owner.len(),
        &missing[..missing.len().min(SHOW)]
    );
    let header = Header {
        samples: h0.list_len,
        shard: Shard::ALL,
        ..h0.clone()
    };
    let ids: Vec<u32> = (0..h0.list_len).collect();
    let mut w = CacheWriter::create(out, header, &ids)?;
    for (ci, r) in owner.into_iter().flatten() {
        w.write_raw(caches[ci].raw_row(r as usize))?;
    }
    w.finish()
}
