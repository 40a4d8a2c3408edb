//! Pieces several examples share (`mod common;`); each example uses a part.
#![allow(dead_code, unreachable_pub, missing_docs)]

use clap::ValueEnum;
use kwx::core::gguf::GgmlType;

/// Peak resident set size of this process so far, in MiB (Linux `VmHWM`); `None` without /proc.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Type of a GGUF export's 2-D weights on the command line (norms stay F32).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WeightType {
    F32,
    F16,
    Bf16,
    #[value(name = "q8_0")]
    Q8_0,
}

impl WeightType {
    /// The GGUF tensor type.
    pub fn ggml(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Bf16 => GgmlType::BF16,
            Self::Q8_0 => GgmlType::Q8_0,
        }
    }
}
