//! The dictionary: the bundled Korean pharmaceutical dictionary's content and invariants, exact
//! round trips through JSONL, TOML and TSV, and every load error with its line and field.
#![allow(clippy::unwrap_used)] // test helpers

use std::collections::HashSet;
use std::path::Path;

use kwx_data::dictionary::{Category, Dictionary, DictionaryError, Entry};

fn jsonl(text: &str) -> Result<Dictionary, DictionaryError> {
    Dictionary::from_jsonl_str(text, Path::new("d.jsonl"))
}

#[test]
fn bundled_dictionary_is_large_and_covers_every_category() {
    let d = Dictionary::bundled();
    assert!(d.len() >= 600, "{} entries", d.len());
    for c in Category::ALL {
        let n = d.by_category(c).count();
        assert!(n >= 30, "{}: {n} entries", c.name());
    }
    let required = [
        ("진통", Category::Symptom),
        ("해열", Category::Symptom),
        ("소염", Category::Symptom),
        ("두통", Category::Symptom),
        ("파스", Category::DosageForm),
        ("정제", Category::DosageForm),
        ("연고", Category::DosageForm),
        ("주사제", Category::DosageForm),
        ("시럽", Category::DosageForm),
        ("캡슐", Category::DosageForm),
        ("점안액", Category::DosageForm),
        ("임산부", Category::Population),
        ("수유부", Category::Population),
        ("노인", Category::Population),
        ("소아", Category::Population),
        ("아세트아미노펜", Category::Ingredient),
        ("이부프로펜", Category::Ingredient),
        ("신신제약", Category::Manufacturer),
        ("유한양행", Category::Manufacturer),
        ("타이레놀", Category::Product),
        ("해열진통제", Category::DrugClass),
        ("항히스타민제", Category::DrugClass),
        ("병용금기", Category::Safety),
    ];
    for (term, category) in required {
        let e = d.get(term).unwrap_or_else(|| panic!("{term} missing"));
        assert_eq!(e.category, category, "{term}");
    }
    assert_eq!(d.resolve("임신부").unwrap().term, "임산부");
    assert_eq!(d.resolve("플라스타").unwrap().term, "파스");
    assert_eq!(d.resolve("임산부").unwrap().term, "임산부");
    assert!(d.resolve("임산부에게").is_none());
}

#[test]
fn bundled_definitions_are_one_korean_sentence() {
    let d = Dictionary::bundled();
    let hangul = |c: char| ('\u{AC00}'..='\u{D7A3}').contains(&c);
    let mut surfaces = HashSet::new();
    for e in d.entries() {
        assert!(
            e.definition.ends_with("다."),
            "{}: {}",
            e.term,
            e.definition
        );
        assert!(
            !e.definition.trim_end_matches('.').contains(". "),
            "{}: two sentences",
            e.term
        );
        assert!(e.definition.chars().any(hangul), "{}", e.term);
        assert!(
            e.term
                .chars()
                .any(|c| hangul(c) || c.is_ascii_alphanumeric()),
            "{}",
            e.term
        );
        for s in e.surfaces() {
            assert!(
                surfaces.insert(s.to_string()),
                "surface `{s}` appears twice"
            );
            assert!(std::ptr::eq(d.resolve(s).unwrap(), e), "{s}");
        }
    }
    assert_eq!(surfaces.len(), d.surfaces().count());
}

#[test]
fn round_trips_through_every_format_exactly() {
    let d = Dictionary::bundled();
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("d.toml");
    let tsv_path = dir.path().join("d.tsv");
    let jsonl_path = dir.path().join("d.jsonl");
    d.write(&toml_path).unwrap();
    let from_toml = Dictionary::from_path(&toml_path).unwrap();
    assert_eq!(from_toml.entries(), d.entries());
    from_toml.write(&tsv_path).unwrap();
    let from_tsv = Dictionary::from_path(&tsv_path).unwrap();
    assert_eq!(from_tsv.entries(), d.entries());
    from_tsv.write(&jsonl_path).unwrap();
    let back = Dictionary::from_path(&jsonl_path).unwrap();
    assert_eq!(back.entries(), d.entries());
    assert_eq!(std::fs::read_to_string(&jsonl_path).unwrap(), d.to_jsonl());
    assert_eq!(back.to_toml(), d.to_toml());
    assert_eq!(back.to_tsv(), d.to_tsv());
    // Atomic writes leave only the three files.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["d.jsonl", "d.toml", "d.tsv"]);
}

const A: &str = r#"{"term":"진통","category":"symptom","definition":"진통은 통증을 줄이는 작용이다.","aliases":[],"english":"analgesia"}"#;
const B: &str = r#"{"term":"임산부","category":"population","definition":"임산부는 임신한 여성이다.","aliases":["임신부"]}"#;

#[test]
fn duplicate_term_names_both_lines() {
    let text = format!("{A}\n{B}\n\n{A}\n");
    match jsonl(&text).unwrap_err() {
        DictionaryError::DuplicateTerm {
            line,
            term,
            first_line,
            ..
        } => assert_eq!((line, term.as_str(), first_line), (4, "진통", 1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_definition_names_the_field() {
    let bad = r#"{"term":"해열","category":"symptom","definition":"  ","aliases":[]}"#;
    match jsonl(&format!("{A}\n{bad}\n")).unwrap_err() {
        DictionaryError::EmptyField { line, field, .. } => {
            assert_eq!((line, field), (2, "definition"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_category_lists_the_known_ones() {
    let bad =
        r#"{"term":"해열","category":"symptoms","definition":"해열은 열을 내리는 작용이다."}"#;
    let err = jsonl(&format!("{A}\n{B}\n{bad}\n")).unwrap_err();
    let message = err.to_string();
    match err {
        DictionaryError::UnknownCategory { line, category, .. } => {
            assert_eq!((line, category.as_str()), (3, "symptoms"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        message.contains("dosage_form") && message.contains("drug_class"),
        "{message}"
    );
}

#[test]
fn malformed_json_names_the_line() {
    let err = jsonl(&format!("{A}\n{B}\n{{\"term\": \n")).unwrap_err();
    match err {
        DictionaryError::Parse { line, .. } => assert_eq!(line, 3),
        other => panic!("{other:?}"),
    }
    // A missing field is a parse error on its line that names the field.
    let err = jsonl(r#"{"term":"해열","category":"symptom"}"#).unwrap_err();
    assert!(
        matches!(err, DictionaryError::Parse { line: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("definition"), "{err}");
}

#[test]
fn alias_conflicts_are_rejected() {
    // An alias equal to another entry's term.
    let bad = r#"{"term":"임부","category":"population","definition":"임부는 임신한 여성이다.","aliases":["임산부"]}"#;
    match jsonl(&format!("{A}\n{B}\n{bad}\n")).unwrap_err() {
        DictionaryError::AliasConflict {
            line,
            alias,
            term,
            other_term,
            ..
        } => assert_eq!(
            (line, alias.as_str(), term.as_str(), other_term.as_str()),
            (3, "임산부", "임부", "임산부")
        ),
        other => panic!("{other:?}"),
    }
    // An alias equal to another entry's alias.
    let bad = r#"{"term":"임부","category":"population","definition":"임부는 임신한 여성이다.","aliases":["임신부"]}"#;
    assert!(matches!(
        jsonl(&format!("{B}\n{bad}\n")).unwrap_err(),
        DictionaryError::AliasConflict { line: 2, .. }
    ));
    // A term equal to an earlier alias.
    let bad =
        r#"{"term":"임신부","category":"population","definition":"임신부는 임신한 여성이다."}"#;
    assert!(matches!(
        jsonl(&format!("{B}\n{bad}\n")).unwrap_err(),
        DictionaryError::AliasConflict { .. } | DictionaryError::DuplicateTerm { .. }
    ));
}

#[test]
fn tsv_and_toml_errors_name_the_line() {
    let tsv = "term\tcategory\tdefinition\taliases\tenglish\n진통\tsymptom\t진통은 통증을 줄이는 작용이다.\t\tanalgesia\n해열\tsymptom\n";
    match Dictionary::from_tsv_str(tsv, Path::new("d.tsv")).unwrap_err() {
        DictionaryError::Parse { line, .. } => assert_eq!(line, 3),
        other => panic!("{other:?}"),
    }
    let toml = "[[entry]]\nterm = \"진통\"\ncategory = \"symptom\"\ndefinition = \"진통은 통증을 줄이는 작용이다.\"\n\n[[entry]]\nterm = \"해열\"\ncategory = \"fever\"\ndefinition = \"해열은 열을 내리는 작용이다.\"\n";
    match Dictionary::from_toml_str(toml, Path::new("d.toml")).unwrap_err() {
        DictionaryError::UnknownCategory { line, category, .. } => {
            assert_eq!((line, category.as_str()), (6, "fever"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn files_by_extension_and_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Dictionary::from_path(dir.path().join("d.csv")).unwrap_err();
    assert!(
        matches!(err, DictionaryError::UnknownFormat { .. }),
        "{err}"
    );
    let missing = dir.path().join("nope").join("d.jsonl");
    let d = Dictionary::new(vec![Entry {
        term: "진통".into(),
        category: Category::Symptom,
        definition: "진통은 통증을 줄이는 작용이다.".into(),
        aliases: vec![],
        english: None,
    }])
    .unwrap();
    match d.write(&missing).unwrap_err() {
        DictionaryError::Io { path, .. } => assert!(path.starts_with(dir.path()), "{path:?}"),
        other => panic!("{other:?}"),
    }
    match Dictionary::from_path(&missing).unwrap_err() {
        DictionaryError::Io { path, .. } => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
}
