//! Crash-safe checkpoints.
//!
//! # Layout (under `<out_dir>/checkpoints/`)
//!
//! ```text
//! state.json                          the commit record: resume point, counters, history
//! ckpt-E0003-S000000.model.safetensors   weights (every var-store variable, incl. BN buffers)
//! ckpt-E0003-S000000.optim.safetensors   optimiser state (<param>/step, <param>/m, <param>/v)
//! best.safetensors, best.json          weights of the best epoch by the monitored metric
//! top/epoch-0003.safetensors           the top-k epochs' weights (listed in state.json)
//! ```
//!
//! `E` is the number of completed epochs and `S` the steps done in the next epoch (0 for an
//! end-of-epoch checkpoint). Every file is written to a temporary name in the same folder,
//! flushed to disk and renamed over its final name, and `state.json` is renamed last: it is the
//! commit point. A process killed at any instant leaves a `state.json` naming complete files; files
//! it does not name (an older checkpoint, a half-written temporary) are deleted on the next start.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

use super::schedule::ScheduleState;
use super::EpochRecord;

/// Schema tag of `state.json`.
pub const STATE_SCHEMA: &str = "kdedge.train.state/1";

/// One retained top-k checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopEntry {
    /// Global 0-based epoch.
    pub epoch: usize,
    /// Monitored metric value.
    pub value: f64,
    /// File name under `checkpoints/top/`.
    pub file: String,
}

/// Early-stopping counters of the current phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopState {
    /// Best monitored value in this phase.
    pub best: Option<f64>,
    /// Consecutive epochs without an improvement above `min_delta`.
    pub bad_epochs: usize,
}

/// Dynamic loss scale of mixed-precision training (unused on the CPU).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    /// Current loss scale.
    pub scale: f64,
    /// Consecutive steps with finite gradients since the last change.
    pub good_steps: usize,
}

/// Train-loss accumulators of a partly done epoch (step checkpoints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// Sum over steps of `loss * images`.
    pub loss_sum: f64,
    /// Images seen.
    pub images: usize,
    /// Seconds spent.
    pub seconds: f64,
    /// Sum over steps of `statistic * images` for the objective's per-step statistics.
    #[serde(default)]
    pub stats_sum: std::collections::BTreeMap<String, f64>,
}

/// Everything needed to resume, written as `state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_SCHEMA`].
    pub schema: String,
    /// The training spec that wrote it (a resume must use the same).
    pub spec: serde_json::Value,
    /// Index of the current phase.
    pub phase: usize,
    /// Completed epochs of the current phase.
    pub phase_epoch: usize,
    /// Completed epochs overall (the next epoch's global index).
    pub epoch: usize,
    /// Steps done in the next epoch (0 at an epoch boundary).
    pub step_in_epoch: usize,
    /// Optimisation steps done overall; with the epoch and step it fixes the RNG seed position.
    pub global_step: u64,
    /// Accumulators of the partly done epoch.
    pub partial: Partial,
    /// The current phase's schedule state.
    pub schedule: ScheduleState,
    /// The current phase's early-stopping counters.
    pub early_stop: EarlyStopState,
    /// Mixed-precision loss scale.
    pub scaler: ScalerState,
    /// Best `(epoch, value)` of the monitored metric so far.
    pub best: Option<(usize, f64)>,
    /// Retained top-k checkpoints, best first.
    pub top: Vec<TopEntry>,
    /// Weights file of this checkpoint (name under `checkpoints/`).
    pub model_file: String,
    /// Optimiser state file (name under `checkpoints/`).
    pub optim_file: String,
    /// True once every phase is done.
    pub finished: bool,
    /// Per-epoch records so far (the logs are rewritten from it).
    pub history: Vec<EpochRecord>,
    /// Names of the phases that early stopping ended.
    pub stopped_early: Vec<String>,
}

/// The `checkpoints/` folder of a run.
pub struct Dir {
    /// `<out_dir>/checkpoints`.
    pub path: PathBuf,
}

/// Writes through `write(tmp)` then renames `tmp` over `dest`, syncing file and folder.
/// The temporary name keeps `dest`'s extension (tch picks the format from it).
pub fn atomic_write(dest: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .context("checkpoint path has no file name")?;
    let tmp = dest.with_file_name(format!(".tmp-{}-{name}", std::process::id()));
    write(&tmp).with_context(|| format!("{}: cannot write", tmp.display()))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("{}: cannot sync", tmp.display()))?;
    fs::rename(&tmp, dest)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), dest.display()))?;
    if let Some(parent) = dest.parent() {
        // Make the rename itself durable; not every file system allows syncing a folder.
        let _ = File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Atomically writes text.
pub fn atomic_write_text(dest: &Path, text: &str) -> Result<()> {
    atomic_write(dest, |tmp| {
        let mut f = File::create(tmp)?;
        f.write_all(text.as_bytes())?;
        Ok(())
    })
}

impl Dir {
    /// Creates `<out_dir>/checkpoints/top/` as needed.
    pub fn create(out_dir: &Path) -> Result<Dir> {
        let path = out_dir.join("checkpoints");
        fs::create_dir_all(path.join("top"))
            .with_context(|| format!("{}: cannot create", path.display()))?;
        Ok(Dir { path })
    }

    /// `state.json`'s path.
    pub fn state_path(&self) -> PathBuf {
        self.path.join("state.json")
    }

    /// Reads `state.json`; `None` when there is none.
    pub fn read_state(&self) -> Result<Option<State>> {
        let p = self.state_path();
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", p.display())),
        };
        let st: State =
            serde_json::from_str(&text).with_context(|| format!("{}: invalid", p.display()))?;
        if st.schema != STATE_SCHEMA {
            anyhow::bail!(
                "{}: schema {:?}, expected {STATE_SCHEMA:?}",
                p.display(),
                st.schema
            );
        }
        Ok(Some(st))
    }

    /// Saves weights and optimiser state under names derived from the position, then commits
    /// `state` (whose file fields are filled in here). Returns the committed state.
    pub fn commit(
        &self,
        mut state: State,
        vs: &VarStore,
        optim: &[(String, Tensor)],
    ) -> Result<State> {
        let stem = format!("ckpt-E{:04}-S{:06}", state.epoch, state.step_in_epoch);
        state.model_file = format!("{stem}.model.safetensors");
        state.optim_file = format!("{stem}.optim.safetensors");
        atomic_write(&self.path.join(&state.model_file), |tmp| {
            vs.save(tmp).map_err(Into::into)
        })?;
        atomic_write(&self.path.join(&state.optim_file), |tmp| {
            Tensor::write_safetensors(optim, tmp).map_err(Into::into)
        })?;
        atomic_write_text(
            &self.state_path(),
            &(serde_json::to_string_pretty(&state)? + "\n"),
        )?;
        self.sweep(&state)?;
        Ok(state)
    }

    /// Deletes checkpoint files and temporaries that `state` does not reference.
    pub fn sweep(&self, state: &State) -> Result<()> {
        let keep = |name: &str| name == state.model_file || name == state.optim_file;
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if (name.starts_with("ckpt-") && !keep(&name)) || name.starts_with(".tmp-") {
                fs::remove_file(entry.path())?;
            }
        }
        let top = self.path.join("top");
        for entry in fs::read_dir(&top)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !state.top.iter().any(|t| t.file == name) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}
