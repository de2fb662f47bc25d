//! Post-training quantisation: calibrate the activation ranges of a [`QatNet`] built from a
//! trained float student on a representative set, then lower it ([`QatNet::to_int_graph`]).
//!
//! The representative set is the first `samples` images (default
//! [`DEFAULT_CALIBRATION_SAMPLES`]) of the training split in list order, as evaluation sees
//! them: letterboxed, not augmented ([`calibration_loader`]). Calibration runs the float
//! network with every BatchNorm folded (running statistics) and widens each activation's
//! observer to the min/max it sees ([`super::observer`]); weights are quantised per channel from
//! their own range when lowered.

use anyhow::{bail, Context, Result};
use tch::nn;

use super::qnet::{QatNet, QatOptions};
use crate::data::{Dataset, Split};
use crate::models::Classifier;
use crate::pipeline::{Loader, LoaderOptions};
use crate::train::BatchSource;

/// Images calibrated on when the configuration does not say (`qat.calibration_samples`).
pub const DEFAULT_CALIBRATION_SAMPLES: usize = 200;

/// The representative set: `dataset`'s training split in list order, evaluation inputs
/// (no augmentation), batches of `batch_size`, for a network reading `input_size` px normalised
/// by `spec`'s normalisation.
pub fn calibration_loader(
    dataset: &Dataset,
    spec: &crate::models::ModelSpec,
    batch_size: usize,
) -> Result<Loader> {
    let mut o = LoaderOptions::new(spec.input_size as usize, batch_size, spec.normalization);
    o.quiet = true;
    Loader::new(dataset, Split::Train, o).context("calibration set")
}

/// Resets every observer of `net` and widens it over the first `samples` images of `source`'s
/// epoch 0 (a partial last batch is cut). Returns the number of images seen (fewer than
/// `samples` when the source has fewer). Errors when `samples` is 0, the source yields no
/// image, or a batch fails to load.
pub fn calibrate(net: &QatNet, source: &dyn BatchSource, samples: usize) -> Result<usize> {
    if samples == 0 {
        bail!("calibration: samples must be at least 1");
    }
    for o in net.observers() {
        o.reset();
    }
    let device = net.device();
    let mut seen = 0usize;
    for (i, batch) in source.epoch(0).enumerate() {
        if seen >= samples {
            break;
        }
        let batch = batch.with_context(|| format!("calibration batch {i}"))?;
        let n = batch.images.size()[0] as usize;
        let take = n.min(samples - seen);
        if take == 0 {
            continue;
        }
        let images = batch.images.narrow(0, 0, take as i64).to_device(device);
        let _ = net.calibrate_batch(&images);
        seen += take;
    }
    if seen == 0 {
        bail!("calibration: the representative set has no image");
    }
    Ok(seen)
}

/// Post-training quantisation of the trained float student `float` (variables in `float_vs`):
/// builds the [`QatNet`] in `vs` and calibrates it on `samples` images of `source`. The result
/// is lowered with [`QatNet::to_int_graph`] and evaluated with its forward pass (the
/// fake-quantised PTQ model); it can also start QAT ([`QatNet::set_options`]).
pub fn post_training_quantize(
    vs: &nn::VarStore,
    float: &dyn Classifier,
    float_vs: &nn::VarStore,
    source: &dyn BatchSource,
    samples: usize,
) -> Result<QatNet> {
    let net = QatNet::new(vs, float, float_vs, QatOptions::default())?;
    calibrate(&net, source, samples)?;
    Ok(net)
}
