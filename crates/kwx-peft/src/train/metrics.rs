//! Keyword precision / recall / F1 over generated answers.

use std::collections::BTreeSet;

/// Micro-averaged keyword scores over a set of examples.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct KeywordScores {
    /// Correct keywords / predicted keywords.
    pub precision: f64,
    /// Correct keywords / gold keywords.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Share of answers that parsed as a JSON array of strings.
    pub valid_json: f64,
}

/// Counts accumulated example by example.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeywordCounts {
    correct: usize,
    predicted: usize,
    gold: usize,
    valid: usize,
    examples: usize,
}

impl KeywordCounts {
    /// Adds one example: the model's raw answer and the gold keywords.
    pub fn add(&mut self, answer: &str, gold: &[String]) {
        let (predicted, valid) = match parse_keywords(answer) {
            Some(p) => (p, true),
            None => (BTreeSet::new(), false),
        };
        let gold: BTreeSet<&str> = gold.iter().map(|s| s.trim()).collect();
        self.correct += predicted
            .iter()
            .filter(|p| gold.contains(p.as_str()))
            .count();
        self.predicted += predicted.len();
        self.gold += gold.len();
        self.valid += usize::from(valid);
        self.examples += 1;
    }

    /// The scores so far (0 where a denominator is 0).
    pub fn scores(&self) -> KeywordScores {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let precision = ratio(self.correct, self.predicted);
        let recall = ratio(self.correct, self.gold);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        KeywordScores {
            precision,
            recall,
            f1,
            valid_json: ratio(self.valid, self.examples),
        }
    }
}

/// The distinct, trimmed, non-empty strings of a JSON array answer (`["진통", "해열"]`); `None`
/// when the answer is not a JSON array of strings.
pub fn parse_keywords(answer: &str) -> Option<BTreeSet<String>> {
    let text = answer.trim();
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let items = value.as_array()?;
    let mut out = BTreeSet::new();
    for item in items {
        let s = item.as_str()?.trim();
        if !s.is_empty() {
            out.insert(s.to_string());
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_scores() {
        let mut c = KeywordCounts::default();
        c.add(
            r#"["진통", "해열", "두통"]"#,
            &["진통".into(), "해열".into(), "임산부".into(), "노인".into()],
        );
        c.add("not json", &["파스".into()]);
        let s = c.scores();
        // correct 2, predicted 3, gold 5
        assert!((s.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.recall - 0.4).abs() < 1e-12);
        assert!((s.f1 - 2.0 * (2.0 / 3.0) * 0.4 / (2.0 / 3.0 + 0.4)).abs() < 1e-12);
        assert_eq!(s.valid_json, 0.5);
        assert_eq!(KeywordCounts::default().scores().f1, 0.0);
        assert_eq!(parse_keywords(r#"[1, "a"]"#), None);
    }
}
