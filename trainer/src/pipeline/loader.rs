//! Batches of one split: parallel decoding on a rayon pool, a bounded prefetch queue filled by a
//! producer thread, an optional in-memory cache of letterboxed images, and a progress bar.
//!
//! Determinism: the epoch's order is a SplitMix64 shuffle seeded by `(seed, epoch)` and each
//! sample's augmentation is seeded by `(seed, epoch, index)` ([`super::sample_seed`]), so an epoch
//! yields the same batches whatever the number of workers or the thread timing.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use tch::Tensor;

use super::{augment, decode, sample_seed, Normalization};
use crate::config::Augmentation;
use crate::data::import::SplitMix64;
use crate::data::{Dataset, Split};

/// How a [`Loader`] makes batches.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderOptions {
    /// Side of the square model input (the letterbox target).
    pub input_size: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Shuffle the order each epoch (seeded by `(seed, epoch)`).
    pub shuffle: bool,
    /// Augmentation parameters (training); `None` gives exactly [`decode::eval_input`]'s pixels.
    pub augment: Option<Augmentation>,
    /// Seed of the shuffles and augmentations.
    pub seed: u64,
    /// The model's input normalisation.
    pub normalization: Normalization,
    /// Decoding threads; 0 = one per core (rayon's default).
    pub workers: usize,
    /// Batches prepared ahead of the consumer (at least 1 is used).
    pub prefetch: usize,
    /// Drop the last batch when it is smaller than `batch_size`.
    pub drop_last: bool,
    /// Keep every letterboxed uint8 image in memory after its first decode (`S * S * 3` bytes
    /// each; 70,000 images at 32x32 take 215 MB). Augmentation is applied to a copy.
    pub cache: bool,
    /// Never show a progress bar (it is also hidden when stderr is not a terminal).
    pub quiet: bool,
}

impl LoaderOptions {
    /// Evaluation settings: in list order, no augmentation, every image (no `drop_last`),
    /// all cores, 2 batches of prefetch, no cache, progress bar shown on a terminal.
    pub fn new(input_size: usize, batch_size: usize, normalization: Normalization) -> Self {
        LoaderOptions {
            input_size,
            batch_size,
            shuffle: false,
            augment: None,
            seed: 0,
            normalization,
            workers: 0,
            prefetch: 2,
            drop_last: false,
            cache: false,
            quiet: false,
        }
    }
}

/// One batch.
#[derive(Debug)]
pub struct Batch {
    /// `[N, 3, S, S]` float32, normalised, on the CPU.
    pub images: Tensor,
    /// `[N, C]` float32: one-hot (multi-class) or multi-hot (multi-label; all zero for an image
    /// without classes).
    pub targets: Tensor,
    /// Class indices of each image (vocabulary order).
    pub labels: Vec<Vec<usize>>,
    /// Positions of the images in the split list.
    pub indices: Vec<usize>,
}

impl Batch {
    /// `[N]` int64 class indices for a cross-entropy loss; an error when some image does not
    /// have exactly one class.
    pub fn class_targets(&self) -> Result<Tensor> {
        let mut out = Vec::with_capacity(self.labels.len());
        for (l, &i) in self.labels.iter().zip(&self.indices) {
            match l.as_slice() {
                [c] => out.push(*c as i64),
                _ => bail!(
                    "image {i} of the split has {} classes, not exactly 1",
                    l.len()
                ),
            }
        }
        Ok(Tensor::from_slice(&out))
    }
}

struct Inner {
    paths: Vec<PathBuf>,
    labels: Vec<Vec<usize>>,
    num_classes: usize,
    opts: LoaderOptions,
    cache: Option<Vec<OnceLock<Arc<[u8]>>>>,
    pool: rayon::ThreadPool,
}

impl Inner {
    /// The letterboxed, not yet augmented image `index`.
    fn letterboxed(&self, index: usize) -> Result<Arc<[u8]>> {
        let path = self
            .paths
            .get(index)
            .ok_or_else(|| anyhow!("sample {index} out of range ({} images)", self.paths.len()))?;
        let make =
            || -> Result<Arc<[u8]>> { Ok(decode::eval_input(path, self.opts.input_size)?.into()) };
        match self.cache.as_ref().and_then(|c| c.get(index)) {
            Some(slot) => {
                if let Some(v) = slot.get() {
                    return Ok(v.clone());
                }
                let v = make()?;
                Ok(slot.get_or_init(|| v).clone())
            }
            None => make(),
        }
    }

    fn sample(&self, index: usize, epoch: usize) -> Result<Vec<u8>> {
        let mut img = self.letterboxed(index)?.to_vec();
        if let Some(a) = &self.opts.augment {
            let seed = sample_seed(self.opts.seed, epoch, index);
            augment::augment(&mut img, self.opts.input_size, a, seed)
                .with_context(|| self.paths[index].display().to_string())?;
        }
        Ok(img)
    }

    fn batch(&self, indices: &[usize], epoch: usize) -> Result<Batch> {
        let s = self.opts.input_size;
        let per = 3 * s * s;
        let mut images = vec![0f32; indices.len() * per];
        self.pool.install(|| {
            images
                .par_chunks_mut(per)
                .zip(indices.par_iter())
                .try_for_each(|(out, &i)| -> Result<()> {
                    let img = self.sample(i, epoch)?;
                    self.opts.normalization.apply(&img, out)
                })
        })?;
        let c = self.num_classes;
        let mut targets = vec![0f32; indices.len() * c];
        let mut labels = Vec::with_capacity(indices.len());
        for (row, &i) in targets.chunks_exact_mut(c.max(1)).zip(indices) {
            let l = self.labels[i].clone();
            for &k in &l {
                row[k] = 1.0;
            }
            labels.push(l);
        }
        let n = indices.len() as i64;
        Ok(Batch {
            images: Tensor::from_slice(&images).view([n, 3, s as i64, s as i64]),
            targets: Tensor::from_slice(&targets).view([n, c as i64]),
            labels,
            indices: indices.to_vec(),
        })
    }
}

/// Batches of one split of a data set (see the module docs).
pub struct Loader {
    inner: Arc<Inner>,
    split: Split,
}

impl Loader {
    /// A loader over `split` of `dataset`. Errors on a zero input or batch size, or a class name
    /// missing from the vocabulary (impossible for a [`Dataset::load`]ed set).
    pub fn new(dataset: &Dataset, split: Split, opts: LoaderOptions) -> Result<Loader> {
        if opts.input_size == 0 || opts.input_size > kdruntime::letterbox::MAX_DIM {
            bail!("loader: input_size {} out of range", opts.input_size);
        }
        if opts.batch_size == 0 {
            bail!("loader: batch_size must be at least 1");
        }
        let entries = dataset.split(split);
        let images = dataset.images_dir();
        let mut labels = Vec::with_capacity(entries.len());
        for e in entries {
            let l = e
                .labels
                .iter()
                .map(|n| {
                    dataset.class_index(n).ok_or_else(|| {
                        anyhow!(
                            "{}:{}: class {n:?} is not in the vocabulary",
                            split.file_name(),
                            e.line
                        )
                    })
                })
                .collect::<Result<Vec<usize>>>()?;
            labels.push(l);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.workers)
            .thread_name(|i| format!("kdtrain-decode-{i}"))
            .build()
            .context("loader: cannot start the decoding threads")?;
        let cache = opts
            .cache
            .then(|| (0..entries.len()).map(|_| OnceLock::new()).collect());
        Ok(Loader {
            inner: Arc::new(Inner {
                paths: entries.iter().map(|e| images.join(&e.image)).collect(),
                labels,
                num_classes: dataset.classes.len(),
                opts,
                cache,
                pool,
            }),
            split,
        })
    }

    /// Images in the split.
    pub fn len(&self) -> usize {
        self.inner.paths.len()
    }

    /// Whether the split has no image.
    pub fn is_empty(&self) -> bool {
        self.inner.paths.is_empty()
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.len(), self.inner.opts.batch_size);
        if self.inner.opts.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The options in use.
    pub fn options(&self) -> &LoaderOptions {
        &self.inner.opts
    }

    /// The uint8 `S x S x 3` image of sample `index` in `epoch`, exactly as batched (before
    /// normalisation).
    pub fn sample(&self, index: usize, epoch: usize) -> Result<Vec<u8>> {
        self.inner.sample(index, epoch)
    }

    /// The batch of the samples at `indices` (positions in the split list) in `epoch`, exactly as
    /// [`Loader::epoch`] would make it (same pixels, augmentation and normalisation).
    pub fn batch(&self, indices: &[usize], epoch: usize) -> Result<Batch> {
        self.inner.batch(indices, epoch)
    }

    /// The order of the samples in `epoch` (shuffled by `(seed, epoch)` or list order), before
    /// `drop_last`.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if self.inner.opts.shuffle {
            let key = SplitMix64::new(self.inner.opts.seed ^ 0x5348_5546_464c_4521).next_u64();
            SplitMix64::new(key ^ epoch as u64).shuffle(&mut order);
        }
        order
    }

    /// Starts producing the batches of `epoch` in a background thread.
    pub fn epoch(&self, epoch: usize) -> Epoch {
        let b = self.inner.opts.batch_size;
        let mut chunks: Vec<Vec<usize>> = self.order(epoch).chunks(b).map(<[_]>::to_vec).collect();
        if self.inner.opts.drop_last && chunks.last().is_some_and(|c| c.len() < b) {
            chunks.pop();
        }
        let total: usize = chunks.iter().map(Vec::len).sum();
        let (tx, rx) = sync_channel(self.inner.opts.prefetch.max(1));
        let inner = self.inner.clone();
        let producer = std::thread::Builder::new()
            .name("kdtrain-loader".into())
            .spawn(move || {
                for chunk in chunks {
                    let batch = inner.batch(&chunk, epoch);
                    let failed = batch.is_err();
                    // A closed channel means the consumer stopped early.
                    if tx.send(batch).is_err() || failed {
                        break;
                    }
                }
            });
        let (rx, producer, error) = match producer {
            Ok(h) => (Some(rx), Some(h), None),
            Err(e) => (
                None,
                None,
                Some(anyhow!("loader: cannot start its thread: {e}")),
            ),
        };
        let progress = if self.inner.opts.quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let pb = ProgressBar::new(total as u64);
            pb.set_style(
                ProgressStyle::with_template(
                    "{prefix} {bar:30} {pos}/{len} images  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb.set_prefix(format!("{} epoch {epoch}", self.split));
            pb
        };
        Epoch {
            rx,
            producer,
            error,
            progress,
        }
    }
}

/// The batches of one epoch, in order; yields `Err` once (then ends) if an image fails.
pub struct Epoch {
    rx: Option<Receiver<Result<Batch>>>,
    producer: Option<JoinHandle<()>>,
    error: Option<anyhow::Error>,
    progress: ProgressBar,
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        match self.rx.as_ref()?.recv() {
            Ok(b) => {
                if let Ok(b) = &b {
                    self.progress.inc(b.indices.len() as u64);
                }
                Some(b)
            }
            Err(_) => {
                self.progress.finish_and_clear();
                None
            }
        }
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        // Closing the receiver makes the producer's next send fail, so it stops.
        self.rx = None;
        if let Some(h) = self.producer.take() {
            let _ = h.join();
        }
        self.progress.finish_and_clear();
    }
}
