//! The dictionary baseline on the kwx-data test split, scored with `kwx_data::eval`.

use kwx_core::{DictionaryExtractor, KeywordExtractor};
use kwx_data::builder::DatasetBuilder;
use kwx_data::dictionary::Dictionary;
use kwx_data::eval::{EvalExample, Evaluator};
use kwx_data::split::HeldOutSplit;

#[test]
fn baseline_finds_seen_terms_and_never_held_out_ones() {
    let dictionary = Dictionary::bundled();
    let held = HeldOutSplit::new(dictionary, 0.1, 0).expect("held-out split");
    let test = held
        .build(&DatasetBuilder::new(dictionary).seed(0), (0, 0, 400), 0.5)
        .expect("test split")
        .test;
    let full = DictionaryExtractor::new(dictionary).expect("full");
    let trained = DictionaryExtractor::without(dictionary, held.terms().iter().map(String::as_str))
        .expect("without held-out");
    let texts: Vec<&str> = test.iter().map(|e| e.text.as_str()).collect();
    let score = |x: &DictionaryExtractor| {
        let predicted: Vec<Vec<String>> = x
            .extract_batch(&texts)
            .expect("extract")
            .into_iter()
            .map(|ks| ks.into_iter().map(|k| k.text).collect())
            .collect();
        Evaluator::new()
            .dictionary(dictionary)
            .held_out(&held)
            .evaluate(
                test.iter()
                    .zip(&predicted)
                    .map(|(e, p)| EvalExample::new(&e.text, &e.labels, p)),
            )
    };
    let full = score(&full);
    let trained = score(&trained);
    let (f, t) = (&full.strict, &trained.strict);
    eprintln!(
        "dictionary baseline, strict micro F1: full {:.4}, without held-out terms {:.4} (held-out recall {:.4}, seen F1 {:.4})",
        f.micro.f1,
        t.micro.f1,
        t.held_out.as_ref().map_or(f64::NAN, |s| s.recall),
        t.seen.as_ref().map_or(f64::NAN, |s| s.f1),
    );
    // The generator labels every dictionary surface it inserts; the full dictionary finds them.
    assert!(f.micro.f1 >= 0.95, "full-dictionary F1 {:.4}", f.micro.f1);
    // Without the held-out entries the baseline finds none of those terms, and still the rest.
    let held_scores = t.held_out.as_ref().expect("held-out scores");
    assert!(
        held_scores.tp == 0 && held_scores.fn_ > 50,
        "{held_scores:?}"
    );
    assert!(t.seen.as_ref().expect("seen").f1 >= 0.95);
}
