//! The domain dictionary: one entry per term, with category, a one-sentence Korean definition,
//! aliases and an optional English gloss; loaders for JSONL, TOML and TSV. (Loaders being written.)

use serde::{Deserialize, Serialize};

/// What kind of term an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Symptoms and efficacy (진통, 해열, 소염, 두통, …).
    Symptom,
    /// Diseases and conditions (감기, 관절염, …).
    Disease,
    /// Dosage forms (파스, 정제, 연고, 주사제, 시럽, 캡슐, 점안액, …).
    DosageForm,
    /// Target populations (임산부, 수유부, 노인, 소아, …).
    Population,
    /// Active ingredients (아세트아미노펜, 이부프로펜, …).
    Ingredient,
    /// Manufacturers (신신제약, 유한양행, …).
    Manufacturer,
    /// Product names (타이레놀, …).
    Product,
    /// Drug classes (해열진통제, 항히스타민제, …).
    DrugClass,
    /// Safety terms (병용금기, 부작용, …).
    Safety,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 9] = [
        Category::Symptom,
        Category::Disease,
        Category::DosageForm,
        Category::Population,
        Category::Ingredient,
        Category::Manufacturer,
        Category::Product,
        Category::DrugClass,
        Category::Safety,
    ];

    /// The snake_case name used in files (`dosage_form`).
    pub fn name(self) -> &'static str {
        match self {
            Category::Symptom => "symptom",
            Category::Disease => "disease",
            Category::DosageForm => "dosage_form",
            Category::Population => "population",
            Category::Ingredient => "ingredient",
            Category::Manufacturer => "manufacturer",
            Category::Product => "product",
            Category::DrugClass => "drug_class",
            Category::Safety => "safety",
        }
    }

    /// The category of a file name (`dosage_form`), if known.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One dictionary entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The dictionary form, which gold labels use (`임산부`).
    pub term: String,
    /// Its category.
    pub category: Category,
    /// One Korean sentence, usable in a prompt.
    pub definition: String,
    /// Variants that mean the same term (`임신부`, `플라스타`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// English gloss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub english: Option<String>,
}
