//! JSONL reading, validation and atomic writing, end to end on files in temporary directories.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use kwx_data::jsonl::{
    AtomicJsonlWriter, InstructionRecord, Issue, JsonlError, JsonlReader, JsonlWriter, Policy,
    SftRecord, ValidationConfig, ValidationReport, filter_sft, read_jsonl, try_write_jsonl_atomic,
    validate_sft, validate_sft_stream, write_jsonl_atomic,
};
use serde::ser::Error as _;
use serde::{Serialize, Serializer};

fn sft(text: &str, labels: &[&str]) -> SftRecord {
    SftRecord {
        text: text.to_owned(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// Reads `bytes` strictly and returns the records before the error and the error.
fn first_error(bytes: &[u8]) -> (Vec<SftRecord>, JsonlError) {
    let mut good = Vec::new();
    for item in JsonlReader::<_, SftRecord>::new(bytes, "data.jsonl") {
        match item {
            Ok(record) => good.push(record),
            Err(e) => return (good, e),
        }
    }
    panic!("no error in {:?}", String::from_utf8_lossy(bytes));
}

/// 1-based byte column of the first occurrence of `needle` in `line`.
fn column_of(line: &str, needle: &str) -> usize {
    line.find(needle).unwrap() + 1
}

const GOOD: &str = r#"{"text": "타이레놀은 해열 진통제다", "labels": ["해열", "진통"]}"#;

#[test]
fn malformed_json_reports_line_and_serde_column() {
    let bad = r#"{"text": "두통", "labels": [}"#;
    let (good, err) = first_error(format!("{GOOD}\n{bad}\n{GOOD}\n").as_bytes());
    assert_eq!(good.len(), 1);
    match &err {
        JsonlError::Json {
            path,
            line,
            column,
            message,
        } => {
            assert_eq!(path, Path::new("data.jsonl"));
            assert_eq!(*line, 2);
            assert_eq!(*column, column_of(bad, "}"));
            assert!(message.contains("expected value"), "{message}");
            assert!(!message.contains("at line"), "{message}");
        }
        other => panic!("expected Json, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("data.jsonl:2:{}: ", column_of(bad, "}"))),
        "{shown}"
    );

    // A truncated line is an EOF error, also `Json`.
    let (_, err) = first_error(br#"{"text": "a", "labels": ["b""#);
    assert!(matches!(err, JsonlError::Json { line: 1, .. }), "{err:?}");
}

#[test]
fn missing_field_names_the_field() {
    let (_, err) = first_error(format!("{GOOD}\n{GOOD}\n{{\"text\": \"감기약\"}}\n").as_bytes());
    match &err {
        JsonlError::MissingField { line, field, .. } => {
            assert_eq!(*line, 3);
            assert_eq!(field, "labels");
        }
        other => panic!("expected MissingField, got {other:?}"),
    }
    assert_eq!(err.to_string(), "data.jsonl:3: missing field `labels`");

    // The other format's file read as SFT: the first missing field is named.
    let instruction = r#"{"instruction": "키워드", "input": "두통약", "output": "[]"}"#;
    let (_, err) = first_error(instruction.as_bytes());
    assert!(
        matches!(&err, JsonlError::MissingField { line: 1, field, .. } if field == "text"),
        "{err:?}"
    );
}

#[test]
fn wrong_types_name_the_top_level_field() {
    let cases = [
        (r#"{"text": 3, "labels": []}"#, Some("text"), "3"),
        (
            r#"{"text": "두통", "labels": "두통"}"#,
            Some("labels"),
            "\"두통\"}",
        ),
        (
            r#"{"labels": ["두통", 7], "text": "두통"}"#,
            Some("labels"),
            "7",
        ),
        (
            r#"{"text": "a\",\"labels\":", "labels": {"x": 1}}"#,
            Some("labels"),
            "{\"x\"",
        ),
        (r#"["text", "labels"]"#, None, "["),
    ];
    for (line, field, near) in cases {
        let (_, err) = first_error(format!("\n{line}\n").as_bytes());
        match &err {
            JsonlError::InvalidField {
                line: 2,
                field: got,
                column,
                message,
                ..
            } => {
                assert_eq!(got.as_deref(), field, "{line}");
                assert!(message.starts_with("invalid type"), "{message}");
                // serde_json points at the offending value or the byte before it.
                let near = column_of(line, near) - 1;
                assert!(
                    (near..=line.len()).contains(column),
                    "{line}: column {column}"
                );
            }
            other => panic!("{line}: expected InvalidField on line 2, got {other:?}"),
        }
        if let Some(field) = field {
            assert!(
                err.to_string().contains(&format!("field `{field}`")),
                "{err}"
            );
        }
    }

    // A duplicated field is an invalid-field error too, naming it.
    let (_, err) = first_error(br#"{"text": "a", "labels": [], "text": "b"}"#);
    assert!(
        matches!(&err, JsonlError::InvalidField { field: Some(f), message, .. }
            if f == "text" && message.contains("duplicate field")),
        "{err:?}"
    );
}

#[test]
fn invalid_utf8_reports_byte_column() {
    // "진" is three bytes, so the bad byte sits at byte column 14, character column 12.
    let mut bad = r#"{"text": "진"#.as_bytes().to_vec();
    let column = bad.len() + 1;
    assert_eq!(column, 14);
    bad.extend_from_slice(b"\xFF\", \"labels\": []}");
    let mut bytes = format!("{GOOD}\r\n\r\n").into_bytes();
    bytes.extend_from_slice(&bad);
    bytes.extend_from_slice(b"\r\n");

    let (good, err) = first_error(&bytes);
    assert_eq!(good.len(), 1);
    match &err {
        JsonlError::InvalidUtf8 {
            line, column: got, ..
        } => {
            assert_eq!(*line, 3);
            assert_eq!(*got, column);
        }
        other => panic!("expected InvalidUtf8, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "data.jsonl:3:14: invalid UTF-8 at byte column 14"
    );

    // Invalid bytes in a field serde would ignore are still caught.
    let mut bytes = br#"{"text": "a", "labels": [], "note": ""#.to_vec();
    bytes.extend_from_slice(b"\xC3\x28\"}\n");
    let (_, err) = first_error(&bytes);
    assert!(
        matches!(
            err,
            JsonlError::InvalidUtf8 {
                line: 1,
                column: 38,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn missing_file_is_io_error_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.jsonl");
    let err = JsonlReader::<_, SftRecord>::open(&path).err().unwrap();
    match &err {
        JsonlError::Io { path: got, source } => {
            assert_eq!(got, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains("absent.jsonl"));
    assert!(matches!(
        read_jsonl::<SftRecord>(&path),
        Err(JsonlError::Io { .. })
    ));
}

#[test]
fn crlf_blank_lines_and_bom() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "\u{feff}{GOOD}\r\n\r\n   \t\r\n\n{}\r\n{{\"text\": \"감기\", \"labels\": [\"감기\"]}}",
        r#"{"text": "파스는\r\n외용제", "labels": ["파스"]}"#
    );
    let path = write_file(dir.path(), "crlf.jsonl", body.as_bytes());

    let mut reader = JsonlReader::<_, SftRecord>::open(&path).unwrap();
    let numbered: Vec<(usize, SftRecord)> = reader.numbered().collect::<Result<_, _>>().unwrap();
    let lines: Vec<usize> = numbered.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, [1, 5, 6]);
    assert_eq!(
        numbered[0].1,
        sft("타이레놀은 해열 진통제다", &["해열", "진통"])
    );
    // An escaped CRLF inside a string is content, not a line ending.
    assert_eq!(numbered[1].1.text, "파스는\r\n외용제");
    // The last line has no line ending at all.
    assert_eq!(numbered[2].1, sft("감기", &["감기"]));
    assert_eq!(reader.bytes_read(), body.len() as u64);
    assert!(reader.next().is_none());

    // Errors after CRLF lines carry the right line, and the CR is not part of the JSON.
    let (_, err) = first_error(format!("{GOOD}\r\n\r\n{{\"text\": \"a\"}}\r\n").as_bytes());
    assert!(
        matches!(err, JsonlError::MissingField { line: 3, .. }),
        "{err:?}"
    );
}

#[test]
fn strict_reader_stops_at_first_error() {
    let data = format!("{GOOD}\n{{\"text\": 1}}\n{GOOD}\n{{oops\n");
    let mut reader = JsonlReader::<_, SftRecord>::new(data.as_bytes(), "strict.jsonl");
    assert!(reader.next().unwrap().is_ok());
    assert!(matches!(
        reader.next(),
        Some(Err(JsonlError::InvalidField { line: 2, .. }))
    ));
    assert!(reader.next().is_none());
    assert!(reader.next().is_none());
    assert_eq!(reader.error_count(), 0);
}

#[test]
fn skip_mode_yields_good_records_and_records_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "three.jsonl",
        format!("{GOOD}\n{{\"text\": \"두통\", \"labels\": [\"두통\",]}}\n{GOOD}\n").as_bytes(),
    );
    let mut reader = JsonlReader::<_, SftRecord>::open(&path)
        .unwrap()
        .skip_invalid(true);
    let records: Vec<SftRecord> = reader.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(reader.error_count(), 1);
    assert_eq!(reader.errors().len(), 1);
    let err = &reader.errors()[0];
    assert!(matches!(err, JsonlError::Json { line: 2, .. }), "{err:?}");
    assert_eq!(err.path(), Some(path.as_path()));
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2:", path.display())),
        "{err}"
    );

    // Only the first `errors_kept` errors are kept; all are counted.
    let data = "x\ny\n{}\nz\n".to_string() + GOOD;
    let mut reader = JsonlReader::<_, SftRecord>::new(data.as_bytes(), "many.jsonl")
        .skip_invalid(true)
        .errors_kept(2);
    assert_eq!(reader.by_ref().count(), 1);
    assert_eq!(reader.error_count(), 4);
    let lines: Vec<_> = reader.take_errors().iter().map(JsonlError::line).collect();
    assert_eq!(lines, [Some(1), Some(2)]);
}

#[test]
fn overlong_lines_are_rejected_and_skipped_past() {
    let long = format!(r#"{{"text": "{}", "labels": []}}"#, "가".repeat(100));
    let short = r#"{"text": "a", "labels": []}"#;
    let data = format!("{short}\n{long}\n{short}\r\n");
    let limit = short.len();

    let mut reader = JsonlReader::<_, SftRecord>::new(data.as_bytes(), "long.jsonl")
        .max_line_bytes(limit)
        .skip_invalid(true);
    let lines: Vec<usize> = reader.numbered().map(|item| item.unwrap().0).collect();
    assert_eq!(lines, [1, 3]);
    assert!(matches!(
        reader.errors(),
        [JsonlError::LineTooLong { line: 2, limit: l, .. }] if *l == limit
    ));

    let (_, err) = {
        let mut reader =
            JsonlReader::<_, SftRecord>::new(data.as_bytes(), "long.jsonl").max_line_bytes(limit);
        let first = reader.next().unwrap().unwrap();
        (first, reader.next().unwrap().unwrap_err())
    };
    assert!(
        matches!(err, JsonlError::LineTooLong { line: 2, .. }),
        "{err:?}"
    );

    // A long run of blanks is not a blank line: what follows it is never looked at.
    let data = format!("{}{short}\n{short}\n", " ".repeat(limit + 10));
    let mut reader =
        JsonlReader::<_, SftRecord>::new(data.as_bytes(), "long.jsonl").max_line_bytes(limit);
    assert!(matches!(
        reader.next(),
        Some(Err(JsonlError::LineTooLong { line: 1, .. }))
    ));
}

#[test]
fn instruction_and_sft_round_trip() {
    let record = sft(
        "타이레놀은 해열 진통제로 두통에 쓴다",
        &["해열", "진통", "두통"],
    );
    let instruction = record.to_instruction("다음 글에서 의약품 키워드를 추출하세요.");
    assert_eq!(instruction.input, record.text);
    assert_eq!(instruction.output, r#"["해열","진통","두통"]"#);
    assert_eq!(instruction.labels().unwrap(), record.labels);
    assert_eq!(instruction.to_sft().unwrap(), record);

    // Labels that need escaping survive the JSON-in-JSON trip.
    let tricky = sft("a \"b\" \\ c", &["\"b\"", "\\", "[x]"]);
    assert_eq!(tricky.to_instruction("i").to_sft().unwrap(), tricky);

    // Through files in both formats.
    let dir = tempfile::tempdir().unwrap();
    let sft_path = dir.path().join("sft.jsonl");
    let inst_path = dir.path().join("inst.jsonl");
    let records = vec![record.clone(), tricky.clone(), sft("빈 라벨", &[])];
    write_jsonl_atomic(&inst_path, records.iter().map(|r| r.to_instruction("추출"))).unwrap();
    let count = try_write_jsonl_atomic(
        &sft_path,
        JsonlReader::<_, InstructionRecord>::open(&inst_path)
            .unwrap()
            .map(|item| item.and_then(|inst| inst.to_sft())),
    )
    .unwrap();
    assert_eq!(count, 3);
    assert_eq!(read_jsonl::<SftRecord>(&sft_path).unwrap(), records);
    let text = fs::read_to_string(&inst_path).unwrap();
    assert!(
        text.contains(r#""output":"[\"해열\",\"진통\",\"두통\"]""#),
        "{text}"
    );

    // An `output` that is not a JSON array of strings.
    for output in ["해열, 진통", "[\"해열\", 3]", "{}"] {
        let bad = InstructionRecord {
            instruction: "i".into(),
            input: "해열".into(),
            output: output.into(),
        };
        let err = bad.to_sft().unwrap_err();
        assert!(matches!(err, JsonlError::InvalidOutput { .. }), "{err:?}");
        assert!(err.to_string().contains(output), "{err}");
    }
}

/// One row per issue kind (and clean rows), line numbers 1-based.
fn crafted() -> Vec<SftRecord> {
    vec![
        sft("이부프로펜은 소염 진통제다", &["이부프로펜", "소염"]), // 1 clean
        sft("   ", &["두통"]),                                      // 2 empty_text (+ not in text)
        sft("감기 시럽", &[]),                                      // 3 no_labels
        sft("감기약 시럽", &["감기", " "]),                         // 4 empty_label
        sft("임신부 복용 주의", &["임산부"]),                       // 5 label_not_in_text
        sft("해열 해열제", &["해열", "해열"]),                      // 6 duplicate_label
        sft("이부프로펜은 소염 진통제다", &["소염", "이부프로펜"]), // 7 duplicate_example of 1
        sft("이부프로펜은 소염 진통제다", &["진통"]),               // 8 duplicate_text of 1
        sft(&"가".repeat(21), &["가"]),                             // 9 text_too_long
        sft("파스 연고 정제 캡슐", &["파스", "연고", "정제", "캡슐"]), // 10 too_many_labels
        sft("신신제약 파스", &["신신제약", "파스"]),                // 11 clean
    ]
}

fn crafted_config() -> ValidationConfig {
    ValidationConfig::keep_all()
        .max_text_chars(Some(20))
        .max_labels(Some(3))
}

#[test]
fn validation_counts_every_issue_when_keeping() {
    let report = validate_sft(crafted(), &crafted_config());
    let expected = [
        (Issue::EmptyText, vec![2]),
        (Issue::NoLabels, vec![3]),
        (Issue::EmptyLabel, vec![4]),
        (Issue::LabelNotInText, vec![2, 5]),
        (Issue::DuplicateLabel, vec![6]),
        (Issue::DuplicateExample, vec![7]),
        (Issue::DuplicateText, vec![8]),
        (Issue::TextTooLong, vec![9]),
        (Issue::TooManyLabels, vec![10]),
    ];
    for (issue, lines) in &expected {
        assert_eq!(report.first_lines(*issue), lines.as_slice(), "{issue}");
        assert_eq!(report.count(*issue), lines.len(), "{issue}");
    }
    assert_eq!(report.issues.len(), Issue::ALL.len());
    assert!(
        report
            .issues
            .iter()
            .all(|entry| entry.policy == Policy::Keep)
    );
    assert_eq!(
        (report.rows_read, report.rows_kept, report.rows_dropped),
        (11, 11, 0)
    );
    assert_eq!(report.labels_per_row.max, 4);
    assert_eq!(report.text_chars.max, 21);
    let mean_labels = 18.0 / 11.0;
    assert!((report.labels_per_row.mean - mean_labels).abs() < 1e-12);

    // Table and JSON.
    let table = report.to_string();
    assert!(
        table.starts_with("rows read 11, kept 11, dropped 0, unreadable 0\n"),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("label_not_in_text")
        && l.contains(" keep ")
        && l.ends_with("  2, 5")));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["rows_read"], 11);
    assert_eq!(json["issues"][3]["issue"], "label_not_in_text");
    assert_eq!(json["issues"][3]["first_lines"], serde_json::json!([2, 5]));
    let back: ValidationReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn validation_drops_by_policy() {
    let (kept, report) = filter_sft(
        crafted(),
        &ValidationConfig::drop_all()
            .max_text_chars(Some(20))
            .max_labels(Some(3)),
    );
    assert_eq!(kept, [crafted()[0].clone(), crafted()[10].clone()]);
    assert_eq!(
        (report.rows_read, report.rows_kept, report.rows_dropped),
        (11, 2, 9)
    );
    assert!(
        report
            .issues
            .iter()
            .all(|entry| entry.policy == Policy::Drop)
    );
    assert!(report.to_string().contains(" drop "));

    // Dropping one kind only.
    let config = crafted_config().policy(Issue::LabelNotInText, Policy::Drop);
    let (kept, report) = filter_sft(crafted(), &config);
    assert_eq!(report.rows_dropped, 2);
    assert!(
        !kept
            .iter()
            .any(|r| r.text == "임신부 복용 주의" || r.text == "   ")
    );

    // The defaults drop empty texts, empty labels and exact duplicates.
    let report = validate_sft(crafted(), &ValidationConfig::default());
    assert_eq!(report.rows_dropped, 3);
    assert_eq!(
        ValidationConfig::default().policy_for(Issue::DuplicateText),
        Policy::Keep
    );
}

#[test]
fn duplicates_are_judged_against_kept_rows() {
    let rows = vec![
        sft("두통에 진통제", &["두통", "해열"]), // dropped: 해열 not in text
        sft("두통에 진통제", &["두통"]),         // a correction, not a duplicate
        sft("두통에 진통제", &["두통"]),         // exact duplicate of 2
        sft("두통에 진통제", &["진통제"]),       // same text as 2, other labels
    ];
    let config = ValidationConfig::keep_all()
        .policy(Issue::LabelNotInText, Policy::Drop)
        .policy(Issue::DuplicateExample, Policy::Drop);
    let (kept, report) = filter_sft(rows.clone(), &config);
    assert_eq!(kept, [rows[1].clone(), rows[3].clone()]);
    assert_eq!(report.first_lines(Issue::DuplicateExample), [3]);
    assert_eq!(report.first_lines(Issue::DuplicateText), [4]);

    // Only the first `lines_kept` line numbers are listed; all are counted.
    let many = vec![sft("감기", &["감기"]); 10];
    let report = validate_sft(many, &ValidationConfig::default().lines_kept(3));
    assert_eq!(report.count(Issue::DuplicateExample), 9);
    assert_eq!(report.first_lines(Issue::DuplicateExample), [2, 3, 4]);
}

#[test]
fn streaming_validation_uses_file_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{GOOD}\n\n{{\"text\": 1}}\n{}\n{GOOD}\n{}\n",
        r#"{"text": "", "labels": ["두통"]}"#, r#"{"text": "두통", "labels": ["두통"]}"#
    );
    let in_path = write_file(dir.path(), "in.jsonl", input.as_bytes());
    let out_path = write_file(dir.path(), "out.jsonl", b"old\n");

    let mut reader = JsonlReader::<_, SftRecord>::open(&in_path)
        .unwrap()
        .skip_invalid(true);
    let mut out = AtomicJsonlWriter::create(&out_path).unwrap();
    let report =
        validate_sft_stream(&mut reader, &ValidationConfig::default(), out.writer()).unwrap();
    assert_eq!(out.commit().unwrap(), 2);

    assert_eq!(report.rows_invalid, 1);
    assert_eq!(
        (report.rows_read, report.rows_kept, report.rows_dropped),
        (4, 2, 2)
    );
    assert_eq!(report.first_lines(Issue::EmptyText), [4]);
    assert_eq!(report.first_lines(Issue::DuplicateExample), [5]);
    let kept = read_jsonl::<SftRecord>(&out_path).unwrap();
    assert_eq!(
        kept,
        [
            sft("타이레놀은 해열 진통제다", &["해열", "진통"]),
            sft("두통", &["두통"])
        ]
    );

    // To any writer; a strict reader's error ends the run.
    let mut reader = JsonlReader::<_, SftRecord>::new(input.as_bytes(), "in.jsonl");
    let mut sink = JsonlWriter::new(Vec::new(), "<memory>");
    let err =
        validate_sft_stream(&mut reader, &ValidationConfig::default(), &mut sink).unwrap_err();
    assert!(
        matches!(err, JsonlError::InvalidField { line: 3, .. }),
        "{err:?}"
    );
    assert_eq!(sink.count(), 1);
}

/// Serializes as `{"n": n}`, or fails when `n` is negative.
struct Row(i64);

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 < 0 {
            return Err(S::Error::custom("negative row"));
        }
        serde_json::json!({ "n": self.0 }).serialize(s)
    }
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn atomic_write_keeps_old_file_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "data.jsonl", b"{\"n\":0}\n");

    // A failing item from a fallible iterator.
    let items = (1..5).map(|n| {
        if n == 3 {
            Err(JsonlError::Io {
                path: "upstream".into(),
                source: std::io::Error::other("boom"),
            })
        } else {
            Ok(Row(n))
        }
    });
    let err = try_write_jsonl_atomic(&path, items).unwrap_err();
    assert!(matches!(&err, JsonlError::Io { path, .. } if path == Path::new("upstream")));
    assert_eq!(fs::read(&path).unwrap(), b"{\"n\":0}\n");
    assert_eq!(dir_names(dir.path()), ["data.jsonl"]);

    // A record that fails to serialize mid-way (after a buffer's worth of good rows).
    let rows = (0..20_000).map(|n| Row(if n == 15_000 { -1 } else { n }));
    let err = write_jsonl_atomic(&path, rows).unwrap_err();
    assert!(
        matches!(&err, JsonlError::Serialize { line: 15_001, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("negative row"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"{\"n\":0}\n");
    assert_eq!(dir_names(dir.path()), ["data.jsonl"]);

    // A caller error type that absorbs ours.
    #[derive(Debug)]
    enum AppError {
        Jsonl,
        Upstream,
    }
    impl From<JsonlError> for AppError {
        fn from(_: JsonlError) -> Self {
            AppError::Jsonl
        }
    }
    let err = try_write_jsonl_atomic(&path, [Ok(Row(1)), Err(AppError::Upstream)]).unwrap_err();
    assert!(matches!(err, AppError::Upstream));
    let err = try_write_jsonl_atomic(&path, [Ok::<_, AppError>(Row(-1))]).unwrap_err();
    assert!(matches!(err, AppError::Jsonl));
    assert_eq!(dir_names(dir.path()), ["data.jsonl"]);

    // Writer dropped without commit: discarded.
    {
        let mut writer = AtomicJsonlWriter::create(&path).unwrap();
        writer.push(&Row(9)).unwrap();
        assert_eq!(
            dir_names(dir.path()).len(),
            2,
            "the temporary file sits beside the target"
        );
    }
    assert_eq!(fs::read(&path).unwrap(), b"{\"n\":0}\n");
    assert_eq!(dir_names(dir.path()), ["data.jsonl"]);
}

#[test]
fn atomic_write_overwrites_and_creates() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "data.jsonl", b"old contents, not JSONL\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    }

    assert_eq!(write_jsonl_atomic(&path, (0..3).map(Row)).unwrap(), 3);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n"
    );
    assert_eq!(dir_names(dir.path()), ["data.jsonl"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    // A serialization error leaves the streaming writer usable, with no partial line.
    let mut writer = AtomicJsonlWriter::create(&path).unwrap();
    writer.push(&Row(7)).unwrap();
    assert!(matches!(
        writer.push(&Row(-7)),
        Err(JsonlError::Serialize { line: 2, .. })
    ));
    writer.push(&sft("두통", &["두통"])).unwrap();
    assert_eq!(writer.count(), 2);
    assert_eq!(writer.commit().unwrap(), 2);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "{\"n\":7}\n{\"text\":\"두통\",\"labels\":[\"두통\"]}\n"
    );

    // A new file, and an empty one.
    let fresh = dir.path().join("fresh.jsonl");
    assert_eq!(
        write_jsonl_atomic(&fresh, Vec::<SftRecord>::new()).unwrap(),
        0
    );
    assert_eq!(fs::read(&fresh).unwrap(), b"");
    assert_eq!(dir_names(dir.path()), ["data.jsonl", "fresh.jsonl"]);

    // A target in a missing directory fails cleanly.
    let err = write_jsonl_atomic(dir.path().join("no/such/dir.jsonl"), [Row(1)]).unwrap_err();
    assert!(matches!(err, JsonlError::Io { .. }), "{err:?}");
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`).
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

const RSS_CHILD_ENV: &str = "KWX_JSONL_RSS_FILE";

/// Peak RSS is per process, and the other tests of this binary run on parallel threads, so the
/// read is measured in a child process that runs only `rss_child_reads_file`.
#[test]
fn streaming_read_keeps_memory_flat() {
    if proc_status_kib("VmHWM").is_none() {
        if cfg!(target_os = "linux") {
            panic!("/proc/self/status must be readable on Linux");
        }
        eprintln!("skipping: no /proc/self/status on this platform");
        return;
    }
    const TARGET_BYTES: u64 = 50 << 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.jsonl");
    let mut rows = 0u64;
    let mut bytes = 0u64;
    {
        let mut out = BufWriter::new(fs::File::create(&path).unwrap());
        while bytes < TARGET_BYTES {
            let line = format!(
                "{{\"text\": \"{rows}번 제품: 이 의약품은 해열 진통 소염 작용이 있으며 두통, 치통, \
                 생리통에 쓴다. 임산부와 수유부는 의사와 상의한다. 아세트아미노펜 함유.\", \
                 \"labels\": [\"해열\", \"진통\", \"소염\", \"두통\", \"임산부\"]}}\n"
            );
            out.write_all(line.as_bytes()).unwrap();
            bytes += line.len() as u64;
            rows += 1;
        }
        out.flush().unwrap();
    }

    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "rss_child_reads_file",
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .args(["--nocapture"])
        .env(RSS_CHILD_ENV, &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed: {stderr}");
    let report = stderr
        .lines()
        .find_map(|l| l.strip_prefix("rss-child "))
        .unwrap_or_else(|| {
            panic!("no report from the child: {stderr}");
        });
    let numbers: Vec<u64> = report.split(' ').map(|n| n.parse().unwrap()).collect();
    let [seen, labels, read, grown_kib] = numbers[..] else {
        panic!("bad report {report}")
    };
    assert_eq!(seen, rows);
    assert_eq!(labels, 5 * rows);
    assert_eq!(read, bytes);
    assert!(
        grown_kib < 20 << 10,
        "reading {} MiB grew the peak RSS by {grown_kib} KiB",
        bytes >> 20
    );
}

#[test]
#[ignore = "run by streaming_read_keeps_memory_flat in a child process"]
fn rss_child_reads_file() {
    let path = std::env::var_os(RSS_CHILD_ENV).expect("the file to read");
    // Reset the peak to the current RSS where the kernel allows it (Linux 4.0+).
    let _ = fs::write("/proc/self/clear_refs", "5");
    let before = proc_status_kib("VmHWM").unwrap();

    let mut reader = JsonlReader::<_, SftRecord>::open(&path).unwrap();
    let mut seen = 0u64;
    let mut labels = 0u64;
    for record in reader.by_ref() {
        let record = record.unwrap();
        seen += 1;
        labels += record.labels.len() as u64;
    }
    let grown = proc_status_kib("VmHWM").unwrap().saturating_sub(before);
    eprintln!("rss-child {seen} {labels} {} {grown}", reader.bytes_read());
}
