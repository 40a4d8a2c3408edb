//! Generated retrieval workloads for the kwx-rag benchmarks (`examples/bench_rag.rs`,
//! `benches/rag.rs`, both include this file with `#[path]`).
//!
//! - [`chunks`]: `n` pharma-like Korean chunks with unique keys and terms. Each term is a new
//!   compound of two or three bundled dictionary terms (`해열` + `파스` → `해열파스`), its body one
//!   framing sentence plus the definitions of its parts (and sometimes of an unrelated entry, as
//!   noise), its category the head's (the last part's), as in Korean compounds.
//! - [`queries`]: sentences naming 1–3 chunk terms with particles attached (`해열파스를`,
//!   `노인용시럽에게`), each with its gold chunk ids.
//! - [`RandomEmbedder`]: seeded random unit vectors per text hash. It measures the vector search
//!   machinery (storage, exact scan, HNSW), not an embedding model.
//!
//! Everything is a function of the seed (rand's `StdRng`, ChaCha12).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashSet;

use kwx::data::builder::with_particle;
use kwx::data::dictionary::Dictionary;
use kwx::data::{Category, Entry};
use kwx::rag::{Chunk, ChunkKind, Embedder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Korean names of the categories, for the framing sentence.
fn category_word(c: Category) -> &'static str {
    match c {
        Category::Symptom => "증상",
        Category::Disease => "질환",
        Category::DosageForm => "제형",
        Category::Population => "복용 대상",
        Category::Ingredient => "성분",
        Category::Manufacturer => "제조사",
        Category::Product => "제품",
        Category::DrugClass => "약효군",
        Category::Safety => "안전성 정보",
    }
}

/// `n` chunks (keys `gen:0000000`…), deterministic in `seed`. Terms are unique and never equal
/// a dictionary surface.
pub fn chunks(dict: &Dictionary, n: usize, seed: u64) -> Vec<Chunk> {
    let entries = dict.entries();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen: HashSet<String> = entries
        .iter()
        .flat_map(Entry::surfaces)
        .map(str::to_owned)
        .collect();
    seen.reserve(n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // Two parts give ~650k compounds; past that (and on collisions) three parts take over.
        let (parts, term) = loop {
            let len = if rng.random_bool(0.6) { 2 } else { 3 };
            let parts: Vec<&Entry> = (0..len)
                .map(|_| &entries[rng.random_range(0..entries.len())])
                .collect();
            if parts.windows(2).any(|w| w[0].term == w[1].term) {
                continue;
            }
            let term: String = parts.iter().map(|e| e.term.as_str()).collect();
            if seen.insert(term.clone()) {
                break (parts, term);
            }
        };
        let head = parts[parts.len() - 1];
        let aliases = parts[0]
            .aliases
            .first()
            .map(|a| {
                let rest: String = parts[1..].iter().map(|e| e.term.as_str()).collect();
                vec![format!("{a}{rest}")]
            })
            .unwrap_or_default();
        let mut names = String::new();
        for (j, p) in parts[..parts.len() - 1].iter().enumerate() {
            if j > 0 {
                names.push_str(", ");
            }
            names.push_str(&p.term);
        }
        // "해열파스는 해열의 성격을 함께 가진 파스 관련 제형이다."
        let mut text = format!(
            "{} {}의 성격을 함께 가진 {} 관련 {}이다.",
            with_particle(&term, "은"),
            names,
            head.term,
            category_word(head.category),
        );
        for p in &parts {
            text.push(' ');
            text.push_str(&p.definition);
        }
        if rng.random_bool(0.3) {
            text.push(' ');
            text.push_str(&entries[rng.random_range(0..entries.len())].definition);
        }
        out.push(Chunk {
            key: format!("gen:{i:07}"),
            kind: ChunkKind::Entry,
            source: "bench_rag".to_owned(),
            term: Some(term),
            aliases,
            category: Some(head.category.name().to_owned()),
            field: None,
            text,
            metadata: Default::default(),
        });
    }
    out
}

/// Query templates: `{slot:particle}` takes a chunk term with the particle attached.
const TEMPLATES: &[&str] = &[
    "{0:은} 어떤 효과가 있나요?",
    "{0:을} 하루에 몇 번 사용하나요?",
    "{0:에게} 이 약을 써도 되나요?",
    "{0:과} {1:을} 함께 복용해도 괜찮습니까?",
    "{0:이} 들어 있는 {1:은} 어린이에게 적합합니까?",
    "{0:이나} {1:으로} 바꿔도 되는지 알려 주세요.",
    "{0:의} 주의사항과 {1:의} 부작용을 비교해 주세요.",
    "{0:이} 들어 있는 {1:은} {2:에게} 적합합니까?",
    "{0:으로} {1:과} {2:을} 대신할 수 있나요?",
    "{0:도} {1:와} {2:처럼} 보관해야 하나요?",
];

/// A query sentence and the chunks it names.
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    /// Ids (positions in the chunk list) of the chunks whose terms the sentence contains.
    pub gold: Vec<u64>,
}

/// `n` queries over `chunks`, deterministic in `seed`.
pub fn queries(chunks: &[Chunk], n: usize, seed: u64) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let template = TEMPLATES[rng.random_range(0..TEMPLATES.len())];
            let slots = template.matches('{').count();
            let mut gold: Vec<u64> = Vec::with_capacity(slots);
            while gold.len() < slots.min(chunks.len()) {
                let id = rng.random_range(0..chunks.len()) as u64;
                if !gold.contains(&id) {
                    gold.push(id);
                }
            }
            let mut text = String::new();
            let mut rest = template;
            while let Some(open) = rest.find('{') {
                text.push_str(&rest[..open]);
                let close = open + rest[open..].find('}').unwrap_or(rest.len() - open);
                let (slot, particle) = rest[open + 1..close].split_once(':').unwrap_or(("0", ""));
                let id = gold[slot.parse::<usize>().unwrap_or(0).min(gold.len() - 1)];
                let term = chunks[id as usize].term.as_deref().unwrap_or_default();
                text.push_str(&with_particle(term, particle));
                rest = &rest[(close + 1).min(rest.len())..];
            }
            text.push_str(rest);
            Query { text, gold }
        })
        .collect()
}

/// The share of `gold` in `found`.
pub fn recall(gold: &[u64], found: &[u64]) -> f64 {
    if gold.is_empty() {
        return 1.0;
    }
    gold.iter().filter(|g| found.contains(g)).count() as f64 / gold.len() as f64
}

/// FNV-1a: a stable text hash (std's hasher may change between releases).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A unit vector of `dim` Gaussian coordinates (uniform in direction), seeded.
pub fn random_unit(dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v: Vec<f32> = Vec::with_capacity(dim + 1);
    while v.len() < dim {
        // Box–Muller: two normals per two uniforms.
        let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        v.push((r * t.cos()) as f32);
        v.push((r * t.sin()) as f32);
    }
    v.truncate(dim);
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// `n` random unit rows of `dim`, flat.
pub fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut flat = Vec::with_capacity(n * dim);
    for i in 0..n as u64 {
        flat.extend(random_unit(
            dim,
            seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ));
    }
    flat
}

/// An [`Embedder`] that maps each text to a seeded random unit vector (by text hash): the same
/// text always gets the same vector, unrelated texts unrelated ones.
#[derive(Debug, Clone, Copy)]
pub struct RandomEmbedder {
    pub dim: usize,
    pub seed: u64,
}

impl Embedder for RandomEmbedder {
    fn id(&self) -> String {
        format!("bench-random:seed{}:dim{}", self.seed, self.dim)
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> kwx::rag::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| random_unit(self.dim, self.seed ^ fnv1a(t)))
            .collect())
    }
}
