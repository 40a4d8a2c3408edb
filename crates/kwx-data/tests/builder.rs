//! The dataset builder and the splits, end to end: gold labels against an independent scan of
//! the text, particle allomorphy, held-out terms, determinism.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use kwx_data::builder::{
    BuildError, DEFAULT_INSTRUCTION, DatasetBuilder, Example, Style, TEMPLATES, distractor_nouns,
    has_batchim, is_effect, with_particle,
};
use kwx_data::dictionary::{Category, Dictionary, Entry};
use kwx_data::jsonl::JsonlWriter;
use kwx_data::split::{HeldOutSplit, SplitError, split_by_example};

fn entry(term: &str, category: Category, aliases: &[&str]) -> Entry {
    Entry {
        term: term.to_owned(),
        category,
        definition: format!("{term}에 대한 정의."),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        english: None,
    }
}

/// A small dictionary with nested surfaces (진통 ⊂ 진통제 ⊂ 해열진통제) and aliases.
fn small() -> Dictionary {
    use Category::*;
    Dictionary::new(vec![
        entry("진통", Symptom, &[]),
        entry("해열", Symptom, &[]),
        entry("두통", Symptom, &["머리아픔"]),
        entry("소염", Symptom, &[]),
        entry("기침", Symptom, &["해수"]),
        entry("감기", Disease, &[]),
        entry("관절염", Disease, &[]),
        entry("위염", Disease, &[]),
        entry("파스", DosageForm, &["플라스타"]),
        entry("정제", DosageForm, &[]),
        entry("연고", DosageForm, &[]),
        entry("캡슐", DosageForm, &[]),
        entry("시럽", DosageForm, &[]),
        entry("주사제", DosageForm, &[]),
        entry("임산부", Population, &["임신부"]),
        entry("노인", Population, &["고령자"]),
        entry("소아", Population, &["어린이"]),
        entry("아세트아미노펜", Ingredient, &["파라세타몰"]),
        entry("이부프로펜", Ingredient, &[]),
        entry("카페인", Ingredient, &[]),
        entry("신신제약", Manufacturer, &[]),
        entry("유한양행", Manufacturer, &[]),
        entry("동아제약", Manufacturer, &[]),
        entry("타이레놀", Product, &[]),
        entry("게보린", Product, &[]),
        entry("판콜에이", Product, &[]),
        entry("해열진통제", DrugClass, &[]),
        entry("진통제", DrugClass, &[]),
        entry("항히스타민제", DrugClass, &[]),
        entry("병용금기", Safety, &[]),
        entry("부작용", Safety, &[]),
        entry("졸음", Safety, &["졸림"]),
    ])
    .expect("valid test dictionary")
}

fn bundled_examples() -> &'static [Example] {
    static EXAMPLES: OnceLock<Vec<Example>> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        DatasetBuilder::new(Dictionary::bundled())
            .seed(42)
            .n(5_000)
            .alias_rate(0.2)
            .no_keyword_rate(0.1)
            .build()
            .expect("bundled dataset builds")
    })
}

fn chars(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end - start).collect()
}

/// Finds every dictionary surface in a text: surfaces bucketed by first character, each
/// candidate compared in place. Independent of the builder's labelling, which never scans.
struct Scanner<'d> {
    by_first: HashMap<char, Vec<(&'d str, &'d str)>>,
}

impl<'d> Scanner<'d> {
    fn new(dict: &'d Dictionary) -> Self {
        let mut by_first: HashMap<char, Vec<(&str, &str)>> = HashMap::new();
        for (surface, entry) in dict.surfaces() {
            let first = surface.chars().next().expect("surfaces are non-empty");
            by_first
                .entry(first)
                .or_default()
                .push((surface, &entry.term));
        }
        Self { by_first }
    }

    /// `(char start, char end, term)` of every occurrence, overlapping ones included.
    fn occurrences(&self, text: &str) -> Vec<(usize, usize, &'d str)> {
        let mut out = Vec::new();
        for (start, (byte, c)) in text.char_indices().enumerate() {
            for &(surface, term) in self.by_first.get(&c).into_iter().flatten() {
                if text[byte..].starts_with(surface) {
                    out.push((start, start + surface.chars().count(), term));
                }
            }
        }
        out
    }
}

fn bundled_scanner() -> &'static Scanner<'static> {
    static SCANNER: OnceLock<Scanner<'static>> = OnceLock::new();
    SCANNER.get_or_init(|| Scanner::new(Dictionary::bundled()))
}

/// Checks one example against its text and the dictionary; returns a description of the first
/// problem.
fn check(dict: &Dictionary, scanner: &Scanner<'_>, ex: &Example) -> Result<(), String> {
    let id = &ex.id;
    if ex.labels.len() != ex.categories.len() {
        return Err(format!("{id}: labels and categories differ in length"));
    }
    let unique: HashSet<_> = ex.labels.iter().collect();
    if unique.len() != ex.labels.len() {
        return Err(format!("{id}: repeated label in {:?}", ex.labels));
    }
    // Spans: in text order, each the surface of its label.
    for pair in ex.spans.windows(2) {
        if pair[0].end > pair[1].start {
            return Err(format!("{id}: spans out of order or overlapping"));
        }
    }
    for span in &ex.spans {
        let surface = chars(&ex.text, span.start, span.end);
        match dict.resolve(&surface) {
            Some(e) if e.term == span.label => {}
            _ => {
                return Err(format!(
                    "{id}: span {surface:?} does not name {:?}",
                    span.label
                ));
            }
        }
    }
    // Labels: the span labels, deduplicated in order of first appearance, with categories.
    let mut firsts: Vec<&str> = Vec::new();
    for span in &ex.spans {
        if !firsts.contains(&span.label.as_str()) {
            firsts.push(&span.label);
        }
    }
    if firsts != ex.labels {
        return Err(format!(
            "{id}: labels {:?} but spans give {firsts:?}",
            ex.labels
        ));
    }
    for (label, category) in ex.labels.iter().zip(&ex.categories) {
        if dict.get(label).map(|e| e.category) != Some(*category) {
            return Err(format!("{id}: {label} is not a {category:?} term"));
        }
    }
    // No surface anywhere in the text outside an inserted span.
    for (start, end, term) in scanner.occurrences(&ex.text) {
        if !ex.spans.iter().any(|s| s.start <= start && end <= s.end) {
            return Err(format!(
                "{id}: unlabelled {term:?} at {start}..{end} in {:?}",
                ex.text
            ));
        }
    }
    Ok(())
}

fn jsonl(examples: &[Example]) -> Vec<u8> {
    let mut writer = JsonlWriter::new(Vec::new(), "memory");
    for ex in examples {
        writer.push(ex).expect("serialize example");
        writer.push(&ex.to_sft()).expect("serialize sft");
        writer
            .push(&ex.to_instruction(DEFAULT_INSTRUCTION))
            .expect("serialize instruction");
    }
    writer.into_inner().expect("flush")
}

#[test]
fn particles_follow_the_final_consonant() {
    let cases = [
        ("임산부", "에게", "임산부에게"),
        ("파스", "을", "파스를"),
        ("파스", "를", "파스를"),
        ("연고", "을", "연고를"),
        ("노인", "은", "노인은"),
        ("노인", "는", "노인은"),
        ("정제", "은", "정제는"),
        ("캡슐", "으로", "캡슐로"),
        ("캡슐", "을", "캡슐을"),
        ("캡슐", "이", "캡슐이"),
        ("주사제", "으로", "주사제로"),
        ("점안액", "으로", "점안액으로"),
        ("시럽", "으로", "시럽으로"),
        ("약물", "과", "약물과"),
        ("시럽", "과", "시럽과"),
        ("연고", "과", "연고와"),
        ("소아", "이", "소아가"),
        ("노인", "가", "노인이"),
        ("파스", "이에요", "파스예요"),
        ("캡슐", "이에요", "캡슐이에요"),
        ("타이레놀", "으로는", "타이레놀로는"),
        ("해열진통제", "으로는", "해열진통제로는"),
        ("항생제", "이나", "항생제나"),
        ("노인", "과는", "노인과는"),
        ("두통", "에", "두통에"),
        ("두통", "의", "두통의"),
        ("두통", "도", "두통도"),
        ("두통", "만", "두통만"),
        ("소아", "에게도", "소아에게도"),
        // Digits read in Sino-Korean: 1 일, 2 이, 3 삼, 10 십.
        ("1", "으로", "1로"),
        ("2", "을", "2를"),
        ("3", "으로", "3으로"),
        ("10", "이", "10이"),
        // Latin letters by letter name, units by their reading.
        ("비타민C", "은", "비타민C는"),
        ("IBU", "을", "IBU를"),
        ("Tylenol", "으로", "Tylenol로"),
        ("Tylenol", "은", "Tylenol은"),
        ("500mg", "을", "500mg을"),
        ("10mL", "을", "10mL를"),
        ("타이레놀(정)", "은", "타이레놀(정)은"),
    ];
    for (word, particle, expected) in cases {
        assert_eq!(
            with_particle(word, particle),
            expected,
            "{word} + {particle}"
        );
    }
    for (word, batchim) in [
        ("노인", true),
        ("정제", false),
        ("캡슐", true),
        ("임산부", false),
        ("7", true),
        ("ABC", false),
        ("", false),
    ] {
        assert_eq!(has_batchim(word), batchim, "{word}");
    }
}

#[test]
fn bundled_dictionary_scale() {
    let dict = Dictionary::bundled();
    assert!(
        dict.len() >= 600,
        "bundled dictionary has {} entries",
        dict.len()
    );
    let examples = bundled_examples();
    let scanner = bundled_scanner();
    assert_eq!(examples.len(), 5_000);

    let templates: HashSet<&str> = examples.iter().map(|e| e.template_id.as_str()).collect();
    assert!(
        templates.len() >= 60,
        "only {} templates used",
        templates.len()
    );
    let keyword_templates = TEMPLATES
        .iter()
        .filter(|t| t.style != Style::NoKeyword)
        .count();
    assert!(
        keyword_templates >= 60,
        "only {keyword_templates} keyword templates"
    );

    let categories: BTreeSet<Category> = examples
        .iter()
        .flat_map(|e| e.categories.iter().copied())
        .collect();
    assert_eq!(categories, Category::ALL.into_iter().collect());

    for ex in examples {
        check(dict, scanner, ex).unwrap_or_else(|e| panic!("{e}"));
    }

    // Aliases were used as surfaces, labelled with the term.
    let aliased = examples
        .iter()
        .flat_map(|e| e.spans.iter().map(move |s| (e, s)))
        .filter(|(e, s)| chars(&e.text, s.start, s.end) != s.label)
        .count();
    assert!(aliased > 100, "only {aliased} alias surfaces");

    // A term mentioned twice keeps one label and two spans.
    assert!(examples.iter().any(|e| e.spans.len() > e.labels.len()));

    // Compounds: the span is the bare term, followed by its suffix in the text.
    let compounds: Vec<&Example> = examples
        .iter()
        .filter(|e| e.template_id.starts_with('c'))
        .collect();
    assert!(!compounds.is_empty());
    for ex in compounds {
        let text: Vec<char> = ex.text.chars().collect();
        let suffixed = ex
            .spans
            .iter()
            .any(|s| matches!(text.get(s.end), Some('형' | '제' | '용' | '약')));
        assert!(suffixed, "{}: no compound in {:?}", ex.id, ex.text);
    }

    // No-keyword sentences have no label and no surface.
    let no_keyword: Vec<&Example> = examples.iter().filter(|e| e.labels.is_empty()).collect();
    let share = no_keyword.len() as f64 / examples.len() as f64;
    assert!((0.07..0.13).contains(&share), "no-keyword share {share}");
    for ex in no_keyword {
        assert!(ex.spans.is_empty());
        assert!(
            ex.template_id.starts_with('n'),
            "{} from {}",
            ex.id,
            ex.template_id
        );
        assert!(scanner.occurrences(&ex.text).is_empty(), "{:?}", ex.text);
    }
    // Distractor sentences carry both general nouns and keywords.
    let distracted = examples
        .iter()
        .filter(|e| e.template_id.starts_with('d') && !e.labels.is_empty())
        .filter(|e| distractor_nouns().any(|d| e.text.contains(d)))
        .count();
    assert!(distracted > 100, "{distracted}");
}

#[test]
fn effects_keywords_and_complaints() {
    let dict = Dictionary::bundled();
    for (term, effect) in [
        ("진통", true),
        ("해열", true),
        ("진해", true),
        ("자양강장", true),
    ]
    .into_iter()
    .chain([
        ("두통", false),
        ("기침", false),
        ("재채기", false),
        ("발열", false),
    ]) {
        assert_eq!(
            is_effect(dict.get(term).expect("bundled term")),
            effect,
            "{term}"
        );
    }
    assert!(
        !is_effect(dict.get("해열진통제").expect("bundled term")),
        "only symptoms"
    );

    let examples = bundled_examples();
    // `{effect/과} {effect} 효과가 있는 …`: the first two labels are efficacies; `{symptom/이}
    // 있을 때`: the first is a complaint.
    for ex in examples.iter().filter(|e| e.template_id == "s01") {
        for label in &ex.labels[..2] {
            assert!(
                is_effect(dict.get(label).expect("label")),
                "{label} in {:?}",
                ex.text
            );
        }
    }
    for ex in examples.iter().filter(|e| e.template_id == "q02") {
        let label = dict.get(&ex.labels[0]).expect("label");
        assert!(
            label.category == Category::Symptom && !is_effect(label),
            "{:?}",
            ex.text
        );
    }
    // `{=효능·효과}` is the alias of the bundled term 효능효과, so it is labelled …
    let headed: Vec<&Example> = examples.iter().filter(|e| e.template_id == "p01").collect();
    assert!(!headed.is_empty());
    for ex in headed {
        assert!(ex.text.starts_with("효능·효과: "), "{:?}", ex.text);
        assert_eq!(
            (ex.labels[0].as_str(), ex.categories[0]),
            ("효능효과", Category::Safety)
        );
    }
    // … and plain text for a dictionary without it.
    let dict = small();
    let examples = DatasetBuilder::new(&dict)
        .seed(8)
        .n(2_000)
        .build()
        .expect("builds");
    let headed: Vec<&Example> = examples.iter().filter(|e| e.template_id == "p01").collect();
    assert!(!headed.is_empty());
    for ex in headed {
        assert!(ex.text.starts_with("효능·효과: "), "{:?}", ex.text);
        assert_eq!(ex.categories[0], Category::Symptom, "{:?}", ex.labels);
        assert_eq!(ex.spans[0].start, "효능·효과: ".chars().count());
    }
}

#[test]
fn template_literals_and_distractors_hold_no_bundled_surface() {
    let dict = Dictionary::bundled();
    let mut literals: Vec<(&str, &str)> = Vec::new();
    for spec in TEMPLATES {
        for literal in spec.literals().expect("template parses") {
            literals.push((spec.id, literal));
        }
    }
    literals.extend(distractor_nouns().map(|d| ("distractor", d)));
    let mut found = Vec::new();
    for (surface, entry) in dict.surfaces() {
        for (id, literal) in &literals {
            if literal.contains(surface) {
                found.push(format!(
                    "{id}: {literal:?} contains {surface:?} ({})",
                    entry.term
                ));
            }
        }
        // Nor a compound written with a space (실온 보관 for 실온보관), which would teach that
        // the spaced form is not a keyword: every split into two parts of two or more syllables.
        let chars: Vec<char> = surface.chars().collect();
        for k in 2..chars.len().saturating_sub(1) {
            let spaced: String = chars[..k].iter().chain([&' ']).chain(&chars[k..]).collect();
            for (id, literal) in &literals {
                if literal.contains(&spaced) {
                    found.push(format!(
                        "{id}: {literal:?} contains {spaced:?} ({})",
                        entry.term
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn small_dictionary_labels_match_inserted_terms() {
    let dict = small();
    let scanner = Scanner::new(&dict);
    let examples = DatasetBuilder::new(&dict)
        .seed(1)
        .n(3_000)
        .alias_rate(0.5)
        .build()
        .expect("builds");
    for ex in &examples {
        check(&dict, &scanner, ex).unwrap_or_else(|e| panic!("{e}"));
    }
    // 진통 + 제 would spell the drug class 진통제: such draws are rejected, so 진통제 appears only
    // when it is the inserted drug class itself.
    for ex in examples.iter().filter(|e| e.text.contains("진통제")) {
        assert!(
            ex.labels.iter().any(|l| l == "진통제" || l == "해열진통제"),
            "{:?} {:?}",
            ex.text,
            ex.labels
        );
    }
    // With an alias rate of 1 every entry that has aliases appears by alias.
    let examples = DatasetBuilder::new(&dict)
        .seed(2)
        .n(300)
        .alias_rate(1.0)
        .build()
        .expect("builds");
    for ex in &examples {
        for span in &ex.spans {
            let entry = dict.get(&span.label).expect("label is a term");
            let surface = chars(&ex.text, span.start, span.end);
            assert_eq!(
                entry.aliases.is_empty(),
                surface == entry.term,
                "{surface} for {}",
                entry.term
            );
        }
    }
}

#[test]
fn output_records() {
    let dict = small();
    let examples = DatasetBuilder::new(&dict)
        .seed(5)
        .n(50)
        .no_keyword_rate(0.0)
        .build()
        .expect("builds");
    let ex = &examples[0];
    assert_eq!(ex.id, "ex-000000");
    let sft = serde_json::to_value(ex.to_sft()).expect("json");
    assert_eq!(
        sft,
        serde_json::json!({ "text": ex.text, "labels": ex.labels })
    );
    let inst = ex.to_instruction(DEFAULT_INSTRUCTION);
    assert_eq!(inst.input, ex.text);
    let output: Vec<String> = serde_json::from_str(&inst.output).expect("output is a JSON array");
    assert_eq!(output, ex.labels);
    assert!(
        !inst.output.contains("\\u"),
        "Korean stays unescaped: {}",
        inst.output
    );
    let line = serde_json::to_string(&inst).expect("json");
    assert!(
        line.starts_with("{\"instruction\":")
            && line.contains("\"input\":")
            && line.contains("\"output\":\"[")
    );
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let dict = Dictionary::bundled();
    let build = |seed| {
        DatasetBuilder::new(dict)
            .seed(seed)
            .n(500)
            .build()
            .expect("builds")
    };
    let a = jsonl(&build(7));
    assert_eq!(a, jsonl(&build(7)));
    assert_ne!(a, jsonl(&build(8)));
    // The first examples do not depend on how many are asked for.
    let short = DatasetBuilder::new(dict)
        .seed(7)
        .n(100)
        .build()
        .expect("builds");
    assert_eq!(short[..], build(7)[..100]);
}

/// Builds held-out splits of `sizes` and checks them by scanning the text.
fn check_held_out(dict: &Dictionary, fraction: f32, sizes: (usize, usize, usize)) {
    let split = HeldOutSplit::new(dict, fraction, 3).expect("split");
    for category in Category::ALL {
        let size = dict.by_category(category).count();
        let held = split.terms_in(category).len();
        assert!(
            held >= 1 && held < size,
            "{category:?}: {held} of {size} held out"
        );
    }
    let held_surfaces: Vec<&str> = split
        .terms()
        .iter()
        .flat_map(|t| dict.get(t).expect("held-out term is a term").surfaces())
        .collect();
    let has_held = |text: &str| held_surfaces.iter().any(|s| text.contains(s));
    let scanner = Scanner::new(dict);

    let builder = DatasetBuilder::new(dict).seed(11).alias_rate(0.3);
    let sets = split.build(&builder, sizes, 0.5).expect("builds");
    assert_eq!((sets.train.len(), sets.val.len(), sets.test.len()), sizes);
    assert!(split.terms().is_disjoint(split.shadowed()));
    let report = split.to_string();
    assert!(
        report.contains("symptom (") && report.contains("shadowed ("),
        "{report}"
    );
    for ex in &sets.train {
        let unseen = |l: &String| split.contains(l) || split.shadowed().contains(l);
        assert!(!ex.labels.iter().any(unseen), "{}: {:?}", ex.id, ex.labels);
        assert!(!ex.held_out);
        assert!(
            !has_held(&ex.text),
            "{} leaks a held-out term: {:?}",
            ex.id,
            ex.text
        );
    }
    for ex in sets.val.iter().chain(&sets.test) {
        check(dict, &scanner, ex).unwrap_or_else(|e| panic!("{e}"));
        let labelled = ex.labels.iter().any(|l| split.contains(l));
        assert_eq!(ex.held_out, labelled, "{}", ex.id);
        assert_eq!(ex.held_out, has_held(&ex.text), "{}: {:?}", ex.id, ex.text);
    }
    // Half the keyword examples (90 % of all) are built around a held-out term.
    let flagged = sets.test.iter().filter(|e| e.held_out).count() as f64 / sizes.2 as f64;
    assert!(
        (0.35..0.55).contains(&flagged),
        "{flagged} of test examples held out"
    );
    let ids: HashSet<&str> = sets
        .train
        .iter()
        .chain(&sets.val)
        .chain(&sets.test)
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(
        ids.len(),
        sizes.0 + sizes.1 + sizes.2,
        "ids are unique across sets"
    );
}

#[test]
fn held_out_terms_never_reach_training() {
    // The small dictionary nests surfaces (진통 ⊂ 진통제 ⊂ 해열진통제): holding out 진통 must
    // also keep 진통제 and 해열진통제 out of training text.
    check_held_out(&small(), 0.3, (2_000, 300, 300));
    let dict = small();
    let train = DatasetBuilder::new(&dict)
        .seed(4)
        .n(2_000)
        .held_out_terms(["진통"])
        .build();
    for ex in train.expect("builds") {
        assert!(!ex.text.contains("진통"), "{:?}", ex.text);
    }
    check_held_out(Dictionary::bundled(), 0.1, (2_000, 300, 300));

    let dict = Dictionary::bundled();
    let split = HeldOutSplit::new(dict, 0.1, 3).expect("split");
    assert_eq!(split, HeldOutSplit::new(dict, 0.1, 3).expect("split"));
    assert_ne!(split, HeldOutSplit::new(dict, 0.1, 4).expect("split"));
    assert!(
        HeldOutSplit::new(dict, 0.0, 3)
            .expect("split")
            .terms()
            .is_empty()
    );
    assert!(matches!(
        HeldOutSplit::new(dict, 1.5, 3),
        Err(SplitError::InvalidFraction(_))
    ));
}

#[test]
fn split_by_example_partitions() {
    let dict = small();
    let examples = DatasetBuilder::new(&dict)
        .seed(9)
        .n(1_001)
        .build()
        .expect("builds");
    let sets = split_by_example(examples.clone(), (0.8, 0.1, 0.1), 4).expect("split");
    assert_eq!(
        (sets.train.len(), sets.val.len(), sets.test.len()),
        (801, 100, 100)
    );
    let mut ids: Vec<&str> = sets
        .train
        .iter()
        .chain(&sets.val)
        .chain(&sets.test)
        .map(|e| e.id.as_str())
        .collect();
    ids.sort_unstable();
    let mut all: Vec<&str> = examples.iter().map(|e| e.id.as_str()).collect();
    all.sort_unstable();
    assert_eq!(ids, all);
    assert_ne!(sets.train[..10], examples[..10], "shuffled");
    assert_eq!(
        sets,
        split_by_example(examples.clone(), (0.8, 0.1, 0.1), 4).expect("split")
    );
    for bad in [(0.8, 0.1, 0.2), (1.2, -0.1, -0.1), (f32::NAN, 0.5, 0.5)] {
        assert!(matches!(
            split_by_example(examples.clone(), bad, 4),
            Err(SplitError::InvalidRatios { .. })
        ));
    }
}

#[test]
fn bad_settings_are_errors() {
    let dict = small();
    let err = DatasetBuilder::new(&dict)
        .alias_rate(1.5)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::InvalidRate {
                name: "alias_rate",
                ..
            }
        ),
        "{err}"
    );
    let err = DatasetBuilder::new(&dict)
        .held_out_terms(["없는말"])
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::UnknownTerm { .. }), "{err}");

    // A term that a template spells in its literal text would go unlabelled.
    let mut entries = small().entries().to_vec();
    entries.push(entry("상담", Category::Safety, &[]));
    let dict = Dictionary::new(entries).expect("valid");
    let err = DatasetBuilder::new(&dict).build().unwrap_err();
    assert!(matches!(err, BuildError::TemplateLiteral { .. }), "{err}");

    // A term that is also a distractor noun is dropped from the distractors.
    let mut entries = small().entries().to_vec();
    entries.push(entry("택배", Category::Safety, &[]));
    let dict = Dictionary::new(entries).expect("valid");
    let examples = DatasetBuilder::new(&dict)
        .seed(3)
        .n(1_000)
        .build()
        .expect("builds");
    for ex in &examples {
        check(&dict, &Scanner::new(&dict), ex).unwrap_or_else(|e| panic!("{e}"));
    }

    // Nothing to fill keyword templates with.
    let dict = Dictionary::new(Vec::new()).expect("empty is valid");
    let err = DatasetBuilder::new(&dict).n(10).build().unwrap_err();
    assert!(matches!(err, BuildError::NoTemplate { .. }), "{err}");
    let only_plain = DatasetBuilder::new(&dict)
        .n(10)
        .no_keyword_rate(1.0)
        .build()
        .expect("builds");
    assert!(only_plain.iter().all(|e| e.labels.is_empty()));
}

#[test]
fn progress_reports_every_example_and_changes_nothing() {
    let dictionary = kwx_data::dictionary::Dictionary::bundled();
    let builder = kwx_data::builder::DatasetBuilder::new(dictionary)
        .seed(3)
        .n(300);
    let mut seen = Vec::new();
    let with = builder.build_with_progress(|done| seen.push(done)).unwrap();
    assert_eq!(seen, (1..=300).collect::<Vec<_>>());
    assert_eq!(with, builder.build().unwrap());
    let split = kwx_data::split::HeldOutSplit::new(dictionary, 0.1, 3).unwrap();
    let mut last = 0;
    let a = split
        .build_with_progress(&builder, (50, 20, 30), 0.5, |done| {
            assert_eq!(done, last + 1);
            last = done;
        })
        .unwrap();
    assert_eq!(last, 100);
    assert_eq!(a, split.build(&builder, (50, 20, 30), 0.5).unwrap());
}
