//! Teachers given as TorchScript files (`torch.jit.trace`/`torch.jit.script` + `save`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use tch::{CModule, Device, Tensor};

use crate::pipeline::Normalization;

/// A TorchScript module used as a frozen teacher: `forward(images [N, 3, S, S]) -> logits [N, C]`.
#[derive(Debug)]
pub struct TorchScriptTeacher {
    module: CModule,
    path: PathBuf,
    /// Input normalisation the module expects; [`Normalization::IMAGENET`] unless set.
    pub normalization: Normalization,
}

impl TorchScriptTeacher {
    /// Loads `path` onto `device` and puts it in evaluation mode.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let mut module = CModule::load_on_device(path, device)
            .map_err(|e| anyhow!("{}: cannot load as TorchScript: {e}", path.display()))?;
        module.set_eval();
        Ok(TorchScriptTeacher {
            module,
            path: path.to_path_buf(),
            normalization: Normalization::IMAGENET,
        })
    }

    /// Logits of a batch (no gradient); errors when the module fails or does not return a
    /// 2-D tensor with one row per image.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let out = tch::no_grad(|| self.module.forward_ts(&[xs]))
            .map_err(|e| anyhow!("{}: forward failed: {e}", self.path.display()))?;
        let size = out.size();
        if size.len() != 2 || size.first() != xs.size().first() {
            bail!(
                "{}: returned shape {size:?}, expected [{}, num_classes]",
                self.path.display(),
                xs.size().first().copied().unwrap_or(0)
            );
        }
        Ok(out)
    }
}
