//! Approximate nearest neighbours for large vector sets: HNSW from `hnsw_rs`.
//!
//! Why `hnsw_rs`: pure Rust (no C++ toolchain for users), maintained, parallel insertion on
//! rayon, a dump/reload format, and filtered search. Alternatives considered: `usearch`
//! (excellent, but C++ bindings), `arroy` (LMDB-backed, a heavier storage model than an index
//! folder needs), `instant-distance` (no release since 2023).
//!
//! The graph is built once at index build time and dumped next to the vectors
//! (`ann.hnsw.graph`, `ann.hnsw.data`, both covered by the manifest's checksums). Dot-product
//! distance on the index's L2-normalised vectors is cosine distance.

use std::path::Path;

use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::{AnnT, DistDot, Hnsw};

use crate::error::{RagError, Result};

const BASENAME: &str = "ann";
/// Neighbours kept per node per layer (HNSW `M`).
const MAX_CONNECTIONS: usize = 24;
/// Candidate list while inserting.
const EF_CONSTRUCTION: usize = 200;
const MAX_LAYERS: usize = 16;
/// The smallest candidate list while searching (raised to `k` when larger).
const EF_SEARCH: usize = 96;

type Graph<'a> = Hnsw<'a, f32, DistDot>;

self_cell::self_cell!(
    /// A reloaded graph together with the loader it borrows from.
    struct Loaded {
        owner: Box<HnswIo>,
        #[not_covariant]
        dependent: Graph,
    }
);

enum Inner {
    Built(Graph<'static>),
    Loaded(Loaded),
}

/// An HNSW graph over row-numbered vectors.
pub struct AnnIndex {
    inner: Inner,
}

impl AnnIndex {
    fn with_graph<R>(&self, f: impl for<'a> FnOnce(&Graph<'a>) -> R) -> R {
        match &self.inner {
            Inner::Built(g) => f(g),
            Inner::Loaded(l) => l.with_dependent(|_, g| f(g)),
        }
    }

    /// Builds the graph over `flat` (rows of `dim` floats), inserting in parallel.
    pub fn build(flat: &[f32], dim: usize) -> Result<Self> {
        if dim == 0 || !flat.len().is_multiple_of(dim) {
            return Err(RagError::Dimension {
                what: "vectors for the HNSW graph".into(),
                expected: dim,
                found: flat.len() % dim.max(1),
            });
        }
        let n = flat.len() / dim;
        let graph: Graph<'static> = Hnsw::new(
            MAX_CONNECTIONS,
            n.max(1),
            MAX_LAYERS,
            EF_CONSTRUCTION,
            DistDot,
        );
        let rows: Vec<(&[f32], usize)> = flat.chunks_exact(dim).zip(0..n).collect();
        graph.parallel_insert_slice(&rows);
        Ok(Self {
            inner: Inner::Built(graph),
        })
    }

    /// Writes the graph into `dir` (`ann.hnsw.graph`, `ann.hnsw.data`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let name = self
            .with_graph(|g| g.file_dump(dir, BASENAME))
            .map_err(|e| RagError::Corrupt {
                path: dir.to_path_buf(),
                detail: format!("writing the HNSW graph: {e}"),
            })?;
        if name != BASENAME {
            return Err(RagError::Corrupt {
                path: dir.to_path_buf(),
                detail: format!("the HNSW graph was written as {name}, expected {BASENAME}"),
            });
        }
        Ok(())
    }

    /// Reloads the graph saved in `dir`; `dim` and `rows` are the manifest's, checked.
    pub fn load(dir: &Path, dim: usize, rows: usize) -> Result<Self> {
        let io = Box::new(HnswIo::new(dir, BASENAME));
        let loaded = Loaded::try_new(io, |io| io.load_hnsw_with_dist::<f32, DistDot>(DistDot))
            .map_err(|e| RagError::Corrupt {
                path: dir.join(format!("{BASENAME}.hnsw.graph")),
                detail: format!("reloading the HNSW graph: {e}"),
            })?;
        let this = Self {
            inner: Inner::Loaded(loaded),
        };
        let points = this.with_graph(|g| g.get_nb_point());
        if points != rows {
            return Err(RagError::Corrupt {
                path: dir.join(format!("{BASENAME}.hnsw.data")),
                detail: format!("{points} points in the HNSW graph, {rows} vectors (dim {dim})"),
            });
        }
        Ok(this)
    }

    /// The `k` nearest rows to `query` (normalised) as `(row, cosine similarity)`, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        self.with_graph(|g| {
            g.search(query, k, EF_SEARCH.max(k))
                .into_iter()
                .map(|n| (n.d_id as u64, 1.0 - n.distance))
                .collect()
        })
    }
}
