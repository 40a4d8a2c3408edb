//! On-disk behaviour: reopen, atomic rebuild, version and corruption errors, dense and HNSW.

#[path = "support/hash_embedder.rs"]
mod hash_embedder;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use hash_embedder::HashEmbedder;
use kwx_data::dictionary::Dictionary;
use kwx_rag::{Chunk, IndexBuilder, Mode, RagError, RagIndex, SearchRequest};

fn chunks() -> Vec<Chunk> {
    Chunk::from_dictionary(Dictionary::bundled(), "bundled")
}

fn embedder() -> Arc<HashEmbedder> {
    Arc::new(HashEmbedder { dim: 128, salt: 7 })
}

const QUERIES: &[&str] = &[
    "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다.",
    "임신부도 복용할 수 있나요",
    "위장 장애가 있는 환자는 식후에 복용하세요",
    "GC녹십자의 H2수용체길항제",
];

fn results(index: &RagIndex, mode: Mode) -> Vec<Vec<(u64, u32)>> {
    QUERIES
        .iter()
        .map(|q| {
            index
                .search(&SearchRequest::new(*q, 10).mode(mode))
                .expect("search")
                .into_iter()
                .map(|h| (h.id, h.score.to_bits()))
                .collect()
        })
        .collect()
}

#[test]
fn reopened_index_answers_exactly_as_built() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("idx");
    let built = IndexBuilder::new(&path)
        .embedder(embedder())
        .build(&chunks())
        .expect("build")
        .with_embedder(embedder())
        .expect("embedder");
    let reopened = RagIndex::open(&path)
        .expect("open")
        .with_embedder(embedder())
        .expect("embedder");
    assert_eq!(reopened.len(), 808);
    for mode in [Mode::Lexical, Mode::Dense, Mode::Hybrid] {
        assert_eq!(results(&built, mode), results(&reopened, mode), "{mode:?}");
    }
    // A chunk comes back exactly as it went in.
    let original = chunks();
    for id in [0u64, 100, 807] {
        assert_eq!(reopened.chunk(id).expect("chunk"), original[id as usize]);
    }
    // Nothing is left behind next to the index.
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["idx"]);
}

#[test]
fn build_refuses_an_existing_folder_and_overwrite_replaces_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("idx");
    let all = chunks();
    IndexBuilder::new(&path)
        .build(&all[..100])
        .expect("first build");
    let err = IndexBuilder::new(&path).build(&all).expect_err("exists");
    assert!(matches!(err, RagError::Exists { .. }), "{err}");
    // The refused build did not touch it.
    assert_eq!(RagIndex::open(&path).expect("open").len(), 100);
    let rebuilt = IndexBuilder::new(&path)
        .overwrite(true)
        .build(&all)
        .expect("overwrite");
    assert_eq!(rebuilt.len(), 808);
    assert_eq!(RagIndex::open(&path).expect("open").len(), 808);
    assert_eq!(fs::read_dir(dir.path()).expect("read_dir").count(), 1);
}

#[test]
fn duplicate_chunk_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all = chunks();
    all.push(all[3].clone());
    let err = IndexBuilder::new(dir.path().join("idx"))
        .build(&all)
        .expect_err("duplicate");
    assert!(err.to_string().contains("chunk 808 repeats key"), "{err}");
    assert!(!dir.path().join("idx").exists());
}

fn build_small(path: &Path) {
    IndexBuilder::new(path)
        .embedder(embedder())
        .build(&chunks()[..200])
        .expect("build");
}

fn manifest(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path.join("manifest.json")).expect("manifest")).expect("json")
}

#[test]
fn another_format_version_is_a_version_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("idx");
    build_small(&path);
    let mut m = manifest(&path);
    m["format_version"] = serde_json::json!(99);
    m["written_by"] = serde_json::json!("kwx-rag 9.0.0");
    fs::write(
        path.join("manifest.json"),
        serde_json::to_vec(&m).expect("json"),
    )
    .expect("write");
    match RagIndex::open(&path) {
        Err(RagError::Version {
            found: 99,
            expected: 1,
            written_by,
            ..
        }) => assert_eq!(written_by, "kwx-rag 9.0.0"),
        other => panic!("expected a version error, got {other:?}"),
    }
}

#[test]
fn corrupt_truncated_or_missing_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pristine = dir.path().join("pristine");
    build_small(&pristine);
    let files: Vec<String> = manifest(&pristine)["files"]
        .as_object()
        .expect("files")
        .keys()
        .cloned()
        .collect();
    assert!(files.iter().any(|f| f.starts_with("tantivy/")), "{files:?}");
    assert!(files.contains(&"vectors.f32".to_owned()));
    for (i, file) in files.iter().enumerate() {
        for damage in ["flip", "truncate", "delete"] {
            let copy = dir.path().join(format!("c{i}-{damage}"));
            copy_dir(&pristine, &copy);
            let target = copy.join(file);
            let mut bytes = fs::read(&target).expect("read");
            match damage {
                "flip" if !bytes.is_empty() => {
                    let at = bytes.len() / 2;
                    bytes[at] ^= 0x20;
                    fs::write(&target, &bytes).expect("write");
                }
                "flip" => continue,
                "truncate" if !bytes.is_empty() => {
                    fs::write(&target, &bytes[..bytes.len() - 1]).expect("write")
                }
                "truncate" => continue,
                _ => fs::remove_file(&target).expect("remove"),
            }
            match RagIndex::open(&copy) {
                Err(RagError::Corrupt { path, .. }) => assert_eq!(path, target, "{damage} {file}"),
                other => panic!("{damage} {file}: expected Corrupt, got {other:?}"),
            }
        }
    }
    // Not an index at all.
    let err = RagIndex::open(dir.path()).expect_err("not an index");
    assert!(matches!(err, RagError::NotAnIndex { .. }), "{err}");
    // A manifest that is not JSON.
    let copy = dir.path().join("bad-manifest");
    copy_dir(&pristine, &copy);
    fs::write(copy.join("manifest.json"), b"{\"format\": ").expect("write");
    assert!(matches!(
        RagIndex::open(&copy),
        Err(RagError::Corrupt { .. })
    ));
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).expect("copy");
        }
    }
}

#[test]
fn dense_needs_vectors_and_the_same_embedder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lexical_only = IndexBuilder::new(dir.path().join("lex"))
        .build(&chunks()[..50])
        .expect("build");
    let err = lexical_only
        .search(&SearchRequest::new("파스", 3).mode(Mode::Dense))
        .expect_err("no vectors");
    assert!(matches!(err, RagError::NoDense(_)), "{err}");
    assert!(matches!(
        lexical_only.with_embedder(embedder()),
        Err(RagError::NoDense(_))
    ));

    let path = dir.path().join("dense");
    build_small(&path);
    let index = RagIndex::open(&path).expect("open");
    let err = index
        .search(&SearchRequest::new("파스", 3).mode(Mode::Hybrid))
        .expect_err("no embedder attached");
    assert!(err.to_string().contains("with_embedder"), "{err}");
    let other = Arc::new(HashEmbedder { dim: 128, salt: 8 });
    assert!(matches!(
        index.with_embedder(other),
        Err(RagError::EmbedderMismatch { .. })
    ));
}

#[test]
fn hnsw_agrees_with_the_exact_scan_and_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = chunks();
    let exact = IndexBuilder::new(dir.path().join("exact"))
        .embedder(embedder())
        .build(&all)
        .expect("exact")
        .with_embedder(embedder())
        .expect("embedder");
    let ann = IndexBuilder::new(dir.path().join("ann"))
        .embedder(embedder())
        .ann_threshold(1)
        .build(&all)
        .expect("ann")
        .with_embedder(embedder())
        .expect("embedder");
    assert!(!exact.uses_ann() && ann.uses_ann());
    let queries: Vec<String> = all.iter().step_by(8).map(|c| c.text.clone()).collect();
    let (mut agree, mut total) = (0usize, 0usize);
    for q in &queries {
        let want: Vec<u64> = exact
            .search(&SearchRequest::new(q.as_str(), 10).mode(Mode::Dense))
            .expect("exact")
            .iter()
            .map(|h| h.id)
            .collect();
        let got: Vec<u64> = ann
            .search(&SearchRequest::new(q.as_str(), 10).mode(Mode::Dense))
            .expect("ann")
            .iter()
            .map(|h| h.id)
            .collect();
        total += want.len();
        agree += want.iter().filter(|id| got.contains(id)).count();
    }
    let recall = agree as f64 / total as f64;
    assert!(recall >= 0.95, "HNSW recall@10 against exact {recall:.3}");
    let reopened = RagIndex::open(dir.path().join("ann"))
        .expect("open")
        .with_embedder(embedder())
        .expect("embedder");
    assert!(reopened.uses_ann());
    for q in queries.iter().take(20) {
        let a: Vec<u64> = ann
            .search(&SearchRequest::new(q.as_str(), 10).mode(Mode::Dense))
            .expect("ann")
            .iter()
            .map(|h| h.id)
            .collect();
        let b: Vec<u64> = reopened
            .search(&SearchRequest::new(q.as_str(), 10).mode(Mode::Dense))
            .expect("reopened")
            .iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(a, b, "{q}");
    }
    // Filtered dense search over the HNSW graph still returns only that category.
    let hits = ann
        .search(
            &SearchRequest::new("임산부와 노인", 5)
                .mode(Mode::Dense)
                .categories(["manufacturer"]),
        )
        .expect("filtered");
    assert_eq!(hits.len(), 5);
    assert!(
        hits.iter()
            .all(|h| h.chunk.category.as_deref() == Some("manufacturer"))
    );
}

#[test]
fn bad_requests_are_config_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = IndexBuilder::new(dir.path().join("idx"))
        .build(&chunks()[..20])
        .expect("build");
    let err = index
        .search(&SearchRequest::new("파스", 0))
        .expect_err("k = 0");
    assert!(matches!(err, RagError::Config { field: "k", .. }), "{err}");
    // A query with no indexable characters finds nothing, without error.
    assert!(
        index
            .search(&SearchRequest::new("!!! ...", 5))
            .expect("search")
            .is_empty()
    );
}
