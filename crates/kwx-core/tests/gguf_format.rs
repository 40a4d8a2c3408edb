//! The GGUF container: every metadata type round-trips through the writer and reader, and
//! corrupt files (truncated at every byte, bad magic, unknown tensor type, data past the end,
//! invalid UTF-8, absurd counts) are typed errors, never panics or huge allocations.
#![allow(clippy::unwrap_used)] // test helpers

use kwx_core::Error;
use kwx_core::gguf::{GgmlType, GgufFile, GgufWriter, MetadataValue, ValueType, parse_header};

fn sample_metadata() -> Vec<(&'static str, MetadataValue)> {
    vec![
        (
            "general.architecture",
            MetadataValue::String("gemma3".into()),
        ),
        ("t.u8", MetadataValue::U8(200)),
        ("t.i8", MetadataValue::I8(-7)),
        ("t.u16", MetadataValue::U16(65_000)),
        ("t.i16", MetadataValue::I16(-30_000)),
        ("t.u32", MetadataValue::U32(4_000_000_000)),
        ("t.i32", MetadataValue::I32(-2_000_000_000)),
        ("t.u64", MetadataValue::U64(u64::MAX - 3)),
        ("t.i64", MetadataValue::I64(i64::MIN + 5)),
        ("t.f32", MetadataValue::F32(-1.5e-7)),
        ("t.f64", MetadataValue::F64(std::f64::consts::PI)),
        ("t.bool", MetadataValue::Bool(true)),
        ("t.str", MetadataValue::String("진통과 해열 ✓".into())),
        (
            "t.arr_str",
            MetadataValue::Array(
                ValueType::String,
                vec![
                    MetadataValue::String("▁파스".into()),
                    MetadataValue::String(String::new()),
                ],
            ),
        ),
        ("t.arr_empty", MetadataValue::Array(ValueType::F32, vec![])),
        (
            "t.arr_nested",
            MetadataValue::Array(
                ValueType::Array,
                vec![MetadataValue::Array(
                    ValueType::I32,
                    vec![MetadataValue::I32(1), MetadataValue::I32(-2)],
                )],
            ),
        ),
    ]
}

/// A small valid file: all metadata types, an F32 tensor and a Q8_0 tensor.
fn sample_file(dir: &std::path::Path) -> (std::path::PathBuf, Vec<f32>, Vec<f32>) {
    let a: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
    let b: Vec<f32> = (0..64).map(|i| ((i * 37) % 19) as f32 - 9.0).collect();
    let mut w = GgufWriter::new();
    for (k, v) in sample_metadata() {
        w.set(k, v);
    }
    w.add_tensor("a.weight", vec![4, 3], GgmlType::F32).unwrap();
    w.add_tensor("b.weight", vec![32, 2], GgmlType::Q8_0)
        .unwrap();
    let path = dir.join("sample.gguf");
    let (qa, qb) = (a.clone(), b.clone());
    w.write(&path, |i, _| {
        Ok(if i == 0 {
            kwx_core::gguf::quant::quantize(GgmlType::F32, &qa).unwrap()
        } else {
            kwx_core::gguf::quant::quantize(GgmlType::Q8_0, &qb).unwrap()
        })
    })
    .unwrap();
    (path, a, b)
}

#[test]
fn metadata_of_every_type_and_tensors_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (path, a, b) = sample_file(dir.path());
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    let got: Vec<(&str, &MetadataValue)> =
        f.metadata().iter().map(|(k, v)| (k.as_str(), v)).collect();
    let want = sample_metadata();
    assert_eq!(got.len(), want.len());
    for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
        assert_eq!(gk, wk);
        assert_eq!(*gv, wv, "{wk}");
    }
    let ta = f.tensor("a.weight").unwrap();
    assert_eq!(
        (ta.dims.clone(), ta.ggml_type, ta.shape()),
        (vec![4, 3], GgmlType::F32, vec![3, 4])
    );
    assert_eq!(f.dequantize("a.weight").unwrap(), a);
    // Q8_0 of small integers in [-9, 9] with max 9 (scale 9/127 in f16) is not exact; compare
    // with the codec's own round trip.
    let mut want_b = vec![0.0; 64];
    kwx_core::gguf::quant::dequantize(
        GgmlType::Q8_0,
        &kwx_core::gguf::quant::quantize(GgmlType::Q8_0, &b).unwrap(),
        &mut want_b,
    )
    .unwrap();
    assert_eq!(f.dequantize("b.weight").unwrap(), want_b);
    // Data offsets honour the alignment.
    for t in f.tensors() {
        assert_eq!(t.offset % 32, 0);
    }
}

fn open_bytes(bytes: Vec<u8>) -> Result<GgufFile, Error> {
    GgufFile::from_bytes(bytes, "corrupt.gguf")
}

#[test]
fn every_truncation_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = sample_file(dir.path());
    let bytes = std::fs::read(path).unwrap();
    assert!(open_bytes(bytes.clone()).is_ok());
    // The writer pads after the last tensor (as gguf-py does); the file ends with the data.
    let header = parse_header(&bytes).unwrap();
    let end = header
        .tensors
        .iter()
        .map(|t| header.data_offset + t.offset + t.n_bytes())
        .max()
        .unwrap() as usize;
    assert!(open_bytes(bytes[..end].to_vec()).is_ok());
    for len in 0..end {
        match open_bytes(bytes[..len].to_vec()) {
            Err(Error::GgufFormat { .. } | Error::GgufTensor { .. }) => {}
            other => panic!("truncated to {len} bytes: {other:?}"),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn bad_magic_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = sample_file(dir.path());
    let good = std::fs::read(path).unwrap();
    let mut bytes = good.clone();
    bytes[..4].copy_from_slice(b"GGML");
    let err = open_bytes(bytes).unwrap_err();
    assert!(matches!(err, Error::GgufFormat { offset: 0, .. }), "{err}");
    assert!(err.to_string().contains("magic"), "{err}");

    // Version 2 has the same layout as 3 (64-bit counts) and reads identically.
    let mut bytes = good.clone();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let v2 = open_bytes(bytes).unwrap();
    assert_eq!(v2.version(), 2);
    assert_eq!(v2.metadata(), open_bytes(good.clone()).unwrap().metadata());
    let mut bytes = good.clone();
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    let err = open_bytes(bytes).unwrap_err();
    assert!(err.to_string().contains("version 1 is obsolete"), "{err}");

    let mut bytes = good.clone();
    bytes[4..8].copy_from_slice(&7u32.to_le_bytes());
    let err = open_bytes(bytes).unwrap_err();
    assert!(err.to_string().contains("version 7"), "{err}");

    let mut bytes = good;
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    let err = open_bytes(bytes).unwrap_err();
    assert!(err.to_string().contains("big-endian"), "{err}");

    let err = GgufFile::open(dir.path().join("missing.gguf")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

/// Offset of the `type` field of tensor `name` in the tensor table.
fn tensor_type_offset(bytes: &[u8], name: &str, n_dims: usize) -> usize {
    let at = find(bytes, name.as_bytes());
    at + name.len() + 4 + 8 * n_dims
}

#[test]
fn unknown_tensor_type_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = sample_file(dir.path());
    let mut bytes = std::fs::read(path).unwrap();
    let at = tensor_type_offset(&bytes, "b.weight", 2);
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 8);
    bytes[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
    match open_bytes(bytes).unwrap_err() {
        Error::GgufTensor {
            tensor, message, ..
        } => {
            assert_eq!(tensor, "b.weight");
            assert!(message.contains("unknown ggml tensor type 77"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tensor_data_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = sample_file(dir.path());
    let good = std::fs::read(path).unwrap();
    // Offset field far beyond the file.
    let mut bytes = good.clone();
    let at = tensor_type_offset(&bytes, "b.weight", 2) + 4;
    bytes[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    match open_bytes(bytes).unwrap_err() {
        Error::GgufTensor {
            tensor, message, ..
        } => {
            assert_eq!(tensor, "b.weight");
            assert!(message.contains("past the end"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Offset near u64::MAX must not overflow.
    let mut bytes = good.clone();
    bytes[at..at + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
    assert!(matches!(open_bytes(bytes), Err(Error::GgufTensor { .. })));
    // Dimensions whose product overflows.
    let mut bytes = good.clone();
    let dims = find(&bytes, b"b.weight") + 8 + 4;
    bytes[dims..dims + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    bytes[dims + 8..dims + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(open_bytes(bytes), Err(Error::GgufTensor { .. })));
    // Misaligned offset.
    let mut bytes = good;
    let cur = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    bytes[at..at + 8].copy_from_slice(&(cur + 4).to_le_bytes());
    let err = open_bytes(bytes).unwrap_err();
    assert!(err.to_string().contains("alignment"), "{err}");
}

#[test]
fn invalid_utf8_in_a_metadata_string() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = sample_file(dir.path());
    let mut bytes = std::fs::read(path).unwrap();
    let at = find(&bytes, "진통".as_bytes());
    bytes[at + 1] = 0xFF;
    match open_bytes(bytes).unwrap_err() {
        Error::GgufFormat {
            offset, message, ..
        } => {
            assert!(
                message.contains("UTF-8") && message.contains("t.str"),
                "{message}"
            );
            // "진" (3 bytes) now starts with a broken sequence: the error points at its start.
            assert_eq!(offset as usize, at);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn absurd_counts_do_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = sample_file(dir.path());
    let good = std::fs::read(path).unwrap();
    // Array length of 2^62 strings: rejected before any allocation (the test would abort with
    // an allocation failure otherwise).
    let mut bytes = good.clone();
    let at = find(&bytes, b"t.arr_str") + "t.arr_str".len() + 4 + 4;
    assert_eq!(u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()), 2);
    bytes[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let err = open_bytes(bytes).unwrap_err();
    assert!(err.to_string().contains("impossible"), "{err}");
    // String length of 2^63.
    let mut bytes = good.clone();
    let at = find(&bytes, "진통".as_bytes()) - 8;
    bytes[at..at + 8].copy_from_slice(&(1u64 << 63).to_le_bytes());
    assert!(matches!(open_bytes(bytes), Err(Error::GgufFormat { .. })));
    // Tensor and metadata counts.
    for field in [8usize, 16] {
        let mut bytes = good.clone();
        bytes[field..field + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = open_bytes(bytes).unwrap_err();
        assert!(matches!(err, Error::GgufFormat { .. }), "{err}");
    }
    // Unknown metadata value type.
    let mut bytes = good;
    let at = find(&bytes, b"t.u8") + 4;
    bytes[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    let err = open_bytes(bytes).unwrap_err();
    assert!(
        err.to_string().contains("unknown metadata value type 99"),
        "{err}"
    );
}

#[test]
fn duplicate_keys_and_tensors_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = sample_file(dir.path());
    let mut bytes = std::fs::read(path).unwrap();
    // Rename t.i8 to t.u8 (same length): a duplicate key.
    let at = find(&bytes, b"t.i8");
    bytes[at..at + 4].copy_from_slice(b"t.u8");
    let err = open_bytes(bytes.clone()).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
    let mut w = GgufWriter::new();
    w.add_tensor("x", vec![4], GgmlType::F32).unwrap();
    assert!(w.add_tensor("x", vec![4], GgmlType::F32).is_err());
    // Q8_0 rows must be whole blocks.
    assert!(w.add_tensor("y", vec![48, 2], GgmlType::Q8_0).is_err());
}

#[test]
fn writer_checks_supplied_lengths_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    w.set(
        "general.architecture",
        MetadataValue::String("gemma".into()),
    );
    w.add_tensor("x", vec![4], GgmlType::F32).unwrap();
    let path = dir.path().join("short.gguf");
    let err = w.write(&path, |_, _| Ok(vec![0u8; 12])).unwrap_err();
    assert!(
        err.to_string().contains("12 bytes supplied, 16 declared"),
        "{err}"
    );
    assert!(!path.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn parse_header_agrees_with_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = sample_file(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let header = parse_header(&bytes).unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(header.tensors, file.tensors());
    assert_eq!(header.metadata.len(), file.metadata().len());
    assert!(header.data_offset as usize <= bytes.len());
}

#[test]
fn model_metadata_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let write = |meta: Vec<(&str, MetadataValue)>| {
        let mut w = GgufWriter::new();
        for (k, v) in meta {
            w.set(k, v);
        }
        let path = dir.path().join("m.gguf");
        w.write(&path, |_, _| Ok(vec![])).unwrap();
        path
    };
    let s = |v: &str| MetadataValue::String(v.into());
    let u = MetadataValue::U32;
    // Another architecture.
    let path = write(vec![("general.architecture", s("llama"))]);
    match kwx_core::Gemma::from_gguf(&path, &burn::tensor::Device::default()).unwrap_err() {
        Error::GgufMetadata { key, message, .. } => {
            assert_eq!(key, "general.architecture");
            assert!(message.contains("`llama`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A missing and a mistyped key.
    let base = vec![
        ("general.architecture", s("gemma3")),
        ("gemma3.block_count", u(2)),
        ("gemma3.feed_forward_length", u(64)),
        ("gemma3.attention.head_count", u(2)),
        ("gemma3.attention.sliding_window", u(8)),
        (
            "tokenizer.ggml.tokens",
            MetadataValue::Array(
                ValueType::String,
                (0..16).map(|i| s(&format!("t{i}"))).collect(),
            ),
        ),
    ];
    let file = GgufFile::open(write(base.clone())).unwrap();
    match kwx_core::gguf::config_from_gguf(&file).unwrap_err() {
        Error::GgufMetadata { key, message, .. } => {
            assert_eq!(key, "gemma3.embedding_length");
            assert!(message.contains("missing"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let mut typed = base.clone();
    typed.push(("gemma3.embedding_length", s("640")));
    let file = GgufFile::open(write(typed)).unwrap();
    let err = kwx_core::gguf::config_from_gguf(&file).unwrap_err();
    assert!(
        err.to_string().contains("gemma3.embedding_length")
            && err.to_string().contains("unsigned integer"),
        "{err}"
    );
    // A per-layer pattern of the wrong length.
    let mut pattern = base;
    pattern.push(("gemma3.embedding_length", u(32)));
    pattern.push((
        "gemma3.attention.sliding_window_pattern",
        MetadataValue::Array(ValueType::Bool, vec![MetadataValue::Bool(true)]),
    ));
    let file = GgufFile::open(write(pattern)).unwrap();
    let err = kwx_core::gguf::config_from_gguf(&file).unwrap_err();
    assert!(err.to_string().contains("1 entries for 2 layers"), "{err}");
    // Tensors missing: named in llama.cpp's terms.
    let mut full = vec![
        ("general.architecture", s("gemma3")),
        ("gemma3.block_count", u(1)),
        ("gemma3.embedding_length", u(32)),
        ("gemma3.feed_forward_length", u(64)),
        ("gemma3.attention.head_count", u(2)),
        ("gemma3.attention.sliding_window", u(8)),
    ];
    full.push((
        "tokenizer.ggml.tokens",
        MetadataValue::Array(
            ValueType::String,
            (0..16).map(|i| s(&format!("t{i}"))).collect(),
        ),
    ));
    let path = write(full);
    match kwx_core::Gemma::from_gguf(&path, &burn::tensor::Device::default()).unwrap_err() {
        Error::MissingTensor { name, .. } => assert!(name.contains("token_embd.weight"), "{name}"),
        other => panic!("{other:?}"),
    }
}
