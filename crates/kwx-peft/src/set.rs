//! [`AdapterSet`]: one base model, several adapters, chosen per request.

use std::collections::BTreeMap;
use std::path::Path;

use kwx_core::Gemma;

use crate::adapter::Adapter;
use crate::error::{Error, Result};
use crate::inject::{attach, merge};

/// A base model and named adapters over it. Each adapter's view shares the base weights (burn
/// tensors are reference counted), so switching adapters per request costs a map lookup, and
/// the set is `Send + Sync` for use from many threads.
///
/// ```no_run
/// # fn main() -> kwx_peft::Result<()> {
/// # let device = burn::tensor::Device::default();
/// let base = kwx_core::Gemma::load("models/gemma-3-270m", &device)?;
/// let mut set = kwx_peft::AdapterSet::new(base);
/// set.load("pharma", "adapters/pharma")?;
/// set.load("legal", "adapters/legal")?;
/// let logits = set.model(Some("pharma"))?.logits(&[2, 651, 1234])?;
/// # let _ = logits; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AdapterSet {
    base: Gemma,
    adapters: BTreeMap<String, (Adapter, Gemma)>,
}

impl AdapterSet {
    /// A set over `base` with no adapters yet.
    pub fn new(base: Gemma) -> Self {
        Self {
            base,
            adapters: BTreeMap::new(),
        }
    }

    /// Reads a PEFT adapter folder and adds it under `name` (replacing one of that name).
    pub fn load(&mut self, name: impl Into<String>, dir: impl AsRef<Path>) -> Result<()> {
        let adapter = Adapter::load(dir, &self.base)?;
        self.insert(name, adapter)
    }

    /// Adds `adapter` under `name` (replacing one of that name).
    pub fn insert(&mut self, name: impl Into<String>, adapter: Adapter) -> Result<()> {
        let model = attach(self.base.clone(), &adapter)?;
        self.adapters.insert(name.into(), (adapter, model));
        Ok(())
    }

    /// Removes an adapter, returning it.
    pub fn remove(&mut self, name: &str) -> Option<Adapter> {
        self.adapters.remove(name).map(|(a, _)| a)
    }

    /// The loaded adapters' names.
    pub fn names(&self) -> Vec<&str> {
        self.adapters.keys().map(String::as_str).collect()
    }

    /// The base model.
    pub fn base(&self) -> &Gemma {
        &self.base
    }

    /// The model to run: the base for `None`, the base with adapter `name` otherwise.
    pub fn model(&self, name: Option<&str>) -> Result<&Gemma> {
        match name {
            None => Ok(&self.base),
            Some(n) => self
                .adapters
                .get(n)
                .map(|(_, m)| m)
                .ok_or_else(|| self.unknown(n)),
        }
    }

    /// The adapter `name`.
    pub fn adapter(&self, name: &str) -> Result<&Adapter> {
        self.adapters
            .get(name)
            .map(|(a, _)| a)
            .ok_or_else(|| self.unknown(name))
    }

    /// A copy of the base with adapter `name` folded into its weights (faster per call).
    pub fn merged(&self, name: &str) -> Result<Gemma> {
        Ok(merge(self.model(Some(name))?.clone()))
    }

    fn unknown(&self, name: &str) -> Error {
        Error::UnknownAdapter {
            name: name.to_string(),
            loaded: self.adapters.keys().cloned().collect(),
        }
    }
}
