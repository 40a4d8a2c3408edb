//! Checkpoint folders: written whole under a temporary name, then renamed into place.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::step::LossScaler;
use super::trainer::{EvalRecord, StepRecord};
use crate::error::{Error, Result};

/// The file in the output folder that names the best checkpoint so far.
pub const BEST_FILE: &str = "best.json";
pub(crate) const STATE_FILE: &str = "trainer_state.json";
pub(crate) const OPTIMIZER_FILE: &str = "optimizer.bpk";
pub(crate) const ADAPTER_DIR: &str = "adapter";
pub(crate) const MODEL_FILE: &str = "model.bpk";

/// The lock file a run holds in its output folder.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive lock on an output folder, held while a run writes there: a second run started on
/// the same folder would clear the first one's unfinished checkpoint temporaries and race it for
/// the checkpoint names. The operating system releases it when the process ends, however it ends.
#[derive(Debug)]
pub(crate) struct OutputLock {
    _file: std::fs::File,
}

impl OutputLock {
    /// Locks `output_dir` (which exists), or names the run that holds it.
    pub(crate) fn acquire(output_dir: &Path) -> Result<Self> {
        use std::io::{Read, Seek, Write};
        let path = output_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let holder = file
                    .read_to_string(&mut holder)
                    .ok()
                    .map(|_| holder.trim().to_string())
                    .filter(|h| !h.is_empty());
                return Err(Error::OutputInUse { path, holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let pid = format!("process {}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self { _file: file })
    }
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TrainerState {
    pub(crate) kwx_version: String,
    /// Optimizer steps completed.
    pub(crate) step: usize,
    /// Data position: the epoch and the micro-batches of it already consumed. The order of each
    /// epoch is drawn from `seed` and the epoch number, so these two fix the data stream.
    pub(crate) epoch: usize,
    pub(crate) cursor: usize,
    pub(crate) seed: u64,
    pub(crate) best_value: Option<f64>,
    pub(crate) best_step: Option<usize>,
    pub(crate) bad_evals: usize,
    pub(crate) train_examples: usize,
    pub(crate) config: serde_json::Value,
    pub(crate) steps: Vec<StepRecord>,
    pub(crate) evals: Vec<EvalRecord>,
    /// f16 training: the dynamic loss scale and its growth count.
    #[serde(default)]
    pub(crate) loss_scaler: Option<LossScaler>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BestPointer {
    pub(crate) step: usize,
    pub(crate) path: PathBuf,
    pub(crate) value: f64,
}

/// The newest complete checkpoint under `output_dir` (one with a trainer state), if any.
pub fn latest_checkpoint(output_dir: &Path) -> Result<Option<PathBuf>> {
    Ok(checkpoints(output_dir)?.pop())
}

/// Complete checkpoints, oldest first.
pub(crate) fn checkpoints(output_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<(usize, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(output_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(output_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(output_dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(n) = name.strip_prefix("checkpoint-")
            && let Ok(step) = n.parse::<usize>()
            && entry.path().join(STATE_FILE).is_file()
        {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

pub(crate) fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path, source })
}

/// Fills a fresh temporary folder with `write`, then renames it to `final_dir`.
pub(crate) fn write_dir_atomic(
    final_dir: &Path,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let parent = final_dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".kwx-tmp-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    write(tmp.path())?;
    sync_dir(tmp.path())?;
    if final_dir.exists() {
        std::fs::remove_dir_all(final_dir).map_err(|e| Error::io(final_dir, e))?;
    }
    let tmp = tmp.keep();
    std::fs::rename(&tmp, final_dir).map_err(|e| Error::io(final_dir, e))?;
    sync_dir(parent)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Removes all but the newest `keep` checkpoints, never `protect`.
pub(crate) fn prune(output_dir: &Path, keep: usize, protect: Option<&Path>) -> Result<()> {
    let all = checkpoints(output_dir)?;
    let excess = all.len().saturating_sub(keep);
    for dir in all.into_iter().take(excess) {
        if Some(dir.as_path()) != protect {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
    }
    Ok(())
}

/// Removes temporary folders and files a killed run left behind.
pub(crate) fn remove_stale_temporaries(output_dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(output_dir).map_err(|e| Error::io(output_dir, e))? {
        let entry = entry.map_err(|e| Error::io(output_dir, e))?;
        if entry.file_name().to_string_lossy().starts_with(".kwx-tmp-") {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}
