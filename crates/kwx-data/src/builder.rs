//! The seeded dataset builder: typed Korean sentence templates filled with dictionary terms.
//!
//! A template such as `{population/은} {product/을} 먹어도 되나요?` names the category of each
//! slot and the particle that follows it; the builder fills the slots with dictionary surfaces
//! (the term, or one of its aliases), attaches the particle allomorph that the surface's final
//! consonant (받침) calls for, and records the gold label and character span of every surface it
//! inserted. Labels therefore come from what was inserted, never from re-scanning the text. The
//! text is then scanned once with every dictionary surface as a check: a match that is not
//! inside an inserted span (a surface formed across a slot boundary, say) rejects the sentence,
//! and another one is drawn. Template literals and distractor nouns are checked against the
//! dictionary up front.
//!
//! Everything is drawn from one `ChaCha8Rng::seed_from_u64(seed)` stream (rand_chacha's stream is
//! fixed across versions, unlike `StdRng`'s), over the dictionary in file order, so a seed gives
//! the same examples byte for byte, and the first `k` examples do not depend on `n`.
//!
//! [`Example::to_sft`] and [`Example::to_instruction`] give the two record formats of
//! [`crate::jsonl`]; write them with [`crate::jsonl::JsonlWriter`] or
//! [`crate::jsonl::write_jsonl_atomic`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dictionary::{Category, Dictionary, Entry};
use crate::jsonl::{InstructionRecord, SftRecord};

/// The default instruction for [`Example::to_instruction`]: extract the keywords in order of
/// appearance and answer with a JSON array only.
pub const DEFAULT_INSTRUCTION: &str = "다음 문장에서 의약품 관련 키워드(증상, 질환, 제형, 복용 대상, \
성분, 제조사, 제품명, 약효 분류, 안전 정보)를 문장에 나온 순서대로 사전 표제어 형태로 추출하여 JSON \
배열로만 답하세요. 해당하는 키워드가 없으면 []로 답하세요.";

/// How often the sentence is redrawn before [`DatasetBuilder::build`] gives up on an example.
const MAX_ATTEMPTS: usize = 256;

/// How often one template is refilled before another is drawn.
const TEMPLATE_ATTEMPTS: usize = 32;

// ---------------------------------------------------------------------------------------------
// Particles
// ---------------------------------------------------------------------------------------------

/// How a word ends, as far as the choice of particle is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalSound {
    /// An open syllable, no 받침 (파스, 정제, 임산부).
    Vowel,
    /// A final ㄹ, which takes the open form of 으로/로 (캡슐로) and the closed form elsewhere
    /// (캡슐을).
    Rieul,
    /// Any other final consonant (노인, 연고형).
    Consonant,
}

/// The final sound of `word` as read aloud.
///
/// Hangul syllables are decomposed (`(c - 0xAC00) % 28` is the 받침 index; 8 is ㄹ). Other endings
/// get the reading a Korean speaker would give them: digits by their Sino-Korean name (1 일, 3 삼,
/// 0 영, so `10` and `100` also end closed), Latin letters by their letter name (`L` 엘 and `R` 알
/// end in ㄹ, `M` 엠 and `N` 엔 in another consonant, the rest open), common units after a digit by
/// the unit (`mg`, `g`: 그램). A trailing parenthetical is skipped (`타이레놀(정)` reads as
/// `타이레놀`). Anything else, including an empty word, counts as open.
pub fn final_sound(word: &str) -> FinalSound {
    let mut word = word.trim_end();
    if word.ends_with(')')
        && let Some(open) = word.rfind('(')
        && open > 0
    {
        word = word[..open].trim_end();
    }
    let Some(last) = word.chars().next_back() else {
        return FinalSound::Vowel;
    };
    match last {
        '가'..='힣' => match (u32::from(last) - 0xAC00) % 28 {
            0 => FinalSound::Vowel,
            8 => FinalSound::Rieul,
            _ => FinalSound::Consonant,
        },
        '0' | '3' | '6' => FinalSound::Consonant,
        '1' | '7' | '8' => FinalSound::Rieul,
        '2' | '4' | '5' | '9' => FinalSound::Vowel,
        c if c.is_ascii_alphabetic() => latin_final(word),
        _ => FinalSound::Vowel,
    }
}

fn latin_final(word: &str) -> FinalSound {
    let letters_start = word
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphabetic())
        .last()
        .map_or(word.len(), |(i, _)| i);
    let letters = word[letters_start..].to_ascii_lowercase();
    let after_digit = word[..letters_start]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_digit());
    if after_digit {
        match letters.as_str() {
            "mg" | "g" | "kg" | "mcg" | "ug" => return FinalSound::Consonant,
            "ml" | "l" | "cc" | "iu" => return FinalSound::Vowel,
            _ => {}
        }
    }
    match letters.chars().next_back() {
        Some('l' | 'r') => FinalSound::Rieul,
        Some('m' | 'n') => FinalSound::Consonant,
        _ => FinalSound::Vowel,
    }
}

/// Whether the last syllable of `word` has a final consonant (받침); see [`final_sound`].
pub fn has_batchim(word: &str) -> bool {
    final_sound(word) != FinalSound::Vowel
}

/// A particle with two allomorphs chosen by the preceding word's final sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Particle {
    /// The form after a final consonant (`은`, `을`, `으로`).
    pub after_consonant: &'static str,
    /// The form after an open syllable (`는`, `를`, `로`).
    pub after_vowel: &'static str,
    /// Whether a final ㄹ takes the open form, as it does for 으로/로 (`캡슐로`).
    pub rieul_as_vowel: bool,
}

const fn alternating(after_consonant: &'static str, after_vowel: &'static str) -> Particle {
    Particle {
        after_consonant,
        after_vowel,
        rieul_as_vowel: false,
    }
}

const fn instrumental(after_consonant: &'static str, after_vowel: &'static str) -> Particle {
    Particle {
        after_consonant,
        after_vowel,
        rieul_as_vowel: true,
    }
}

impl Particle {
    /// Every alternating particle the templates may use. Particles with one form (에게, 에, 의,
    /// 도, 만, 에서, …) are attached as written.
    pub const ALL: &'static [Particle] = &[
        alternating("은", "는"),
        alternating("이", "가"),
        alternating("을", "를"),
        alternating("과", "와"),
        alternating("과는", "와는"),
        alternating("이나", "나"),
        alternating("이랑", "랑"),
        alternating("이에요", "예요"),
        alternating("이라고", "라고"),
        alternating("이라는", "라는"),
        alternating("이라도", "라도"),
        alternating("이며", "며"),
        instrumental("으로", "로"),
        instrumental("으로는", "로는"),
        instrumental("으로도", "로도"),
        instrumental("으로만", "로만"),
    ];

    /// The alternating particle one of whose forms is `form` (`"를"` finds 을/를).
    pub fn parse(form: &str) -> Option<Particle> {
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.after_consonant == form || p.after_vowel == form)
    }

    /// The allomorph that follows `word`.
    pub fn form_after(self, word: &str) -> &'static str {
        match final_sound(word) {
            FinalSound::Vowel => self.after_vowel,
            FinalSound::Rieul if self.rieul_as_vowel => self.after_vowel,
            FinalSound::Rieul | FinalSound::Consonant => self.after_consonant,
        }
    }
}

/// `word` followed by `particle`, with the allomorph chosen for `word`. `particle` may be either
/// form of an alternating particle (`"을"` or `"를"`); any other string is attached unchanged.
///
/// ```
/// use kwx_data::builder::with_particle;
/// assert_eq!(with_particle("파스", "을"), "파스를");
/// assert_eq!(with_particle("캡슐", "으로"), "캡슐로");
/// assert_eq!(with_particle("임산부", "에게"), "임산부에게");
/// ```
pub fn with_particle(word: &str, particle: &str) -> String {
    let form = Particle::parse(particle).map_or(particle, |p| p.form_after(word));
    let mut out = String::with_capacity(word.len() + form.len());
    out.push_str(word);
    out.push_str(form);
    out
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// What kind of sentence a template makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// A plain declarative sentence.
    Statement,
    /// A user's question (…먹어도 되나요?).
    Question,
    /// Package-insert phrasing (효능·효과, 용법·용량, 사용상의 주의사항).
    Insert,
    /// A list joined with `·`, `,`, 와/과 or 및.
    List,
    /// A term compounded with 형, 용, 약 or 제 (파스형, 소아용, 두통약, 살균제); the label stays the
    /// term. A compound that is itself a dictionary surface (진통 + 제 = 진통제) is never drawn.
    Compound,
    /// The same term twice, to exercise one label with two spans.
    Reference,
    /// Keywords mixed with general nouns that are not in the dictionary.
    Distractor,
    /// No keyword at all: the gold label list is empty.
    NoKeyword,
}

/// One sentence template.
///
/// The pattern is literal text with slots in braces:
/// - `{category}`: a term of that category (`{symptom}`, `{dosage_form}`, …); `{effect}` draws
///   the efficacy symptoms (see [`is_effect`]) and `{symptom}` then draws the rest;
/// - `{list:category}`: two or three distinct terms joined with `·`, `,`, 와/과 or 및;
/// - `{=surface}`: that exact surface, labelled when the dictionary has it (`{=효능·효과}`);
/// - `{noun:kind}`: a general noun of a [`NounKind`], as a distractor;
/// - `{@N}`: the surface of the N-th slot again.
///
/// A slot may add a compound suffix, `{dosage_form+형}`, and a particle, `{population/에게}`;
/// alternating particles are written in either form and resolved per surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateSpec {
    /// A stable id (`q07`), recorded in every example.
    pub id: &'static str,
    /// What kind of sentence it makes.
    pub style: Style,
    /// The pattern.
    pub pattern: &'static str,
}

const fn t(id: &'static str, style: Style, pattern: &'static str) -> TemplateSpec {
    TemplateSpec { id, style, pattern }
}

use Style::{Compound, Distractor, Insert, List, NoKeyword, Question, Reference, Statement};

/// The built-in templates, one per line. Their literal text must contain no dictionary surface;
/// [`DatasetBuilder::build`] checks that for the dictionary it is given.
#[rustfmt::skip] // A table reads best one template per line.
pub const TEMPLATES: &[TemplateSpec] = &[
    // Statements.
    t("s01", Statement, "{effect/과} {effect} 효과가 있는 {dosage_form+형} 의약품은 {population/과} {population/에게} 적합합니다."),
    t("s02", Statement, "{product/은} {manufacturer/이} 만든 {drug_class}입니다."),
    t("s03", Statement, "{product/의} 주성분은 {ingredient}입니다."),
    t("s04", Statement, "{ingredient/은} 주로 {symptom/을} 가라앉히는 데 쓰입니다."),
    t("s05", Statement, "{disease/이} 있는 분은 {ingredient/을} 드시기 전에 먼저 상담을 받으세요."),
    t("s06", Statement, "{population/은} {dosage_form/을} 쓸 때 {safety/에} 유의해야 합니다."),
    t("s07", Statement, "{drug_class/은} {symptom/을} 덜어 주는 데 도움이 됩니다."),
    t("s08", Statement, "{manufacturer/이} 새로운 {dosage_form} 제품을 내놓았습니다."),
    t("s09", Statement, "{disease/을} 앓는 사람은 {drug_class/을} 고를 때 전문가와 의논하는 것이 좋습니다."),
    t("s10", Statement, "{ingredient/이} 들어 있는 {dosage_form/은} {population/에게} 권장되지 않습니다."),
    t("s11", Statement, "{symptom/이} 심한 날에는 {product/을} 찾는 사람이 많습니다."),
    t("s12", Statement, "{safety} 관련 내용은 {product} 설명서에 자세히 나와 있습니다."),
    t("s13", Statement, "{ingredient/과} {ingredient/을} 함께 먹을 때는 {safety} 정보를 먼저 확인하세요."),
    t("s14", Statement, "{product/은} {ingredient/을} 주성분으로 하는 {dosage_form}입니다."),
    t("s15", Statement, "{disease/에는} 보통 {drug_class/이} 쓰입니다."),
    t("s16", Statement, "{manufacturer/은} {disease} 분야의 제품으로 잘 알려져 있습니다."),
    t("s17", Statement, "{dosage_form/은} {population/도} 비교적 쉽게 쓸 수 있습니다."),
    t("s18", Statement, "{symptom/만} 있다면 {product} 한 가지로 충분할 수 있습니다."),
    t("s19", Statement, "{ingredient/은} {effect} 효과가 있어 {disease/에} 널리 쓰입니다."),
    t("s20", Statement, "{product/은} {list:effect} 효과를 함께 기대할 수 있는 {drug_class}입니다."),
    // Questions.
    t("q01", Question, "{population/은} {product/을} 먹어도 되나요?"),
    t("q02", Question, "{symptom/이} 있을 때 {dosage_form/을} 써도 괜찮을까요?"),
    t("q03", Question, "{ingredient/이} 들어간 약은 {population/도} 먹을 수 있나요?"),
    t("q04", Question, "{disease/에} 먹을 만한 {drug_class/이} 있을까요?"),
    t("q05", Question, "{product/과} {product/을} 같이 먹어도 되나요?"),
    t("q06", Question, "{manufacturer/에서} 나온 {dosage_form} 중에 {symptom/에} 잘 듣는 게 있나요?"),
    t("q07", Question, "{product/을} 먹기 전에 {safety} 관련 내용을 꼭 확인해야 하나요?"),
    t("q08", Question, "{symptom} 때문에 {product/을} 샀는데 {population/이} 먹어도 될까요?"),
    t("q09", Question, "{ingredient/은} {population/에게도} 안전한가요?"),
    t("q10", Question, "{list:symptom/이} 함께 있으면 어떤 약을 먹어야 하나요?"),
    t("q11", Question, "{product/은} 하루에 몇 번 먹어야 하나요?"),
    t("q12", Question, "{drug_class/을} 오래 먹을 때 {safety/도} 신경 써야 하나요?"),
    t("q13", Question, "{disease/으로} 병원에 다니는데 {product/을} 함께 먹어도 될까요?"),
    t("q14", Question, "{product/이} {disease/에도} 듣나요?"),
    t("q15", Question, "{dosage_form/이랑} {dosage_form} 중에 뭐가 더 빨리 듣나요?"),
    t("q16", Question, "{population}인데 {symptom/이} 있어서 {product/을} 먹어도 되는지 궁금해요."),
    t("q17", Question, "{ingredient} 성분이 든 {dosage_form/은} 어디서 살 수 있나요?"),
    t("q18", Question, "{effect} 효과가 있는 {dosage_form/은} {population/이} 써도 되나요?"),
    // Package-insert phrasing.
    t("p01", Insert, "{=효능·효과}: {list:symptom/의} 완화"),
    t("p02", Insert, "{=효능·효과}: {disease/으로} 인한 {symptom/의} 완화"),
    t("p03", Insert, "{=용법·용량}: {population/은} 1회 1개씩, 1일 3회 식사 후에 복용한다."),
    t("p04", Insert, "{=사용상의주의사항}: {population/과} {population/은} 복용 전 의사 또는 약사와 상의할 것."),
    t("p05", Insert, "{=사용상의주의사항}: {list:disease/이} 있는 사람은 신중히 복용할 것."),
    t("p06", Insert, "다음 사람은 복용하지 말 것: {ingredient/을} 먹고 불편했던 적이 있는 사람"),
    t("p07", Insert, "주성분: {ingredient} / 모양: {dosage_form} / 제조: {manufacturer}"),
    t("p08", Insert, "이 약은 {drug_class/으로} {symptom/에} 사용한다."),
    t("p09", Insert, "{safety} 관련 정보: {ingredient/을} 함유한 다른 제품과 함께 복용하기 전에 확인할 것."),
    t("p10", Insert, "{population/은} 이 약의 {safety/에} 특히 주의할 것."),
    t("p11", Insert, "{=용법·용량}: {dosage_form/은} 1일 2~3회, 정해진 양만 사용한다."),
    t("p12", Insert, "{product}({ingredient}) - {manufacturer}"),
    t("p13", Insert, "{=효능·효과}: {list:disease/에} 의한 {symptom/의} 완화"),
    t("p14", Insert, "{=사용상의주의사항}: {drug_class/을} 오래 복용하는 경우 {safety/에} 주의할 것."),
    t("p15", Insert, "{=보관방법}: {=실온보관}. 제조사: {manufacturer}, 제품명: {product}"),
    t("p16", Insert, "{=효능·효과}: {list:effect}"),
    // Lists.
    t("l01", List, "{list:ingredient/이} 함께 들어 있는 복합 제품입니다."),
    t("l02", List, "{list:population/은} 복용 전에 상담이 필요합니다."),
    t("l03", List, "{list:dosage_form} 등 여러 모양으로 나와 있습니다."),
    t("l04", List, "{list:manufacturer/이} 비슷한 제품을 판매하고 있습니다."),
    t("l05", List, "{list:safety} 등의 항목을 꼭 읽어 보세요."),
    t("l06", List, "{list:disease/을} 함께 앓고 있다면 {drug_class} 선택에 신중해야 합니다."),
    t("l07", List, "대표적인 {drug_class/으로는} {list:product/이} 있습니다."),
    t("l08", List, "{product/은} {list:symptom/에} 두루 쓰입니다."),
    // Compounds: the label is the bare term.
    t("c01", Compound, "{dosage_form+형} 제품이 {population/에게} 더 편합니다."),
    t("c02", Compound, "{population+용} {product/이} 따로 나와 있습니다."),
    t("c03", Compound, "{effect+제/은} 용도에 맞게 골라 써야 합니다."),
    t("c04", Compound, "{disease+약/은} 약국에서 쉽게 살 수 있습니다."),
    t("c05", Compound, "{population+용/으로} 나온 {dosage_form/을} 고르세요."),
    t("c06", Compound, "{effect+제/와} {effect+제/는} 성분이 다를 수 있습니다."),
    t("c07", Compound, "{dosage_form+형/으로} 바꾸면 {population/도} 쓰기 편합니다."),
    t("c08", Compound, "{symptom+약/을} 찾다가 {product/을} 추천받았어요."),
    // One term mentioned twice.
    t("r01", Reference, "{product/은} {drug_class}입니다. {@1/은} {population/에게} 권장되지 않습니다."),
    t("r02", Reference, "{ingredient/은} {symptom/에} 좋지만, {@1/을} 먹기 전에 {safety} 항목을 확인하세요."),
    t("r03", Reference, "{dosage_form/을} 처음 써 보는데, {@1/은} 하루에 몇 번 쓰나요?"),
    // Keywords among general nouns.
    t("d01", Distractor, "{noun:place/에서} {product/을} 사려고 했는데 {noun:money/이} 생각보다 비쌌어요."),
    t("d02", Distractor, "{manufacturer/의} {noun:service} 정책이 바뀌어서 {dosage_form} 제품의 {noun:item/도} 달라졌습니다."),
    t("d03", Distractor, "{noun:place} 근처에서 {population+용} {dosage_form/을} 구할 수 있을까요?"),
    t("d04", Distractor, "{product/은} {noun:item/과} {noun:item/이} 모두 마음에 들었습니다."),
    t("d05", Distractor, "{noun:place/에} 들른 김에 {symptom/에} 쓰는 약을 물어봤습니다."),
    t("d06", Distractor, "{disease} 때문에 {noun:plan/을} 미루고 집에서 쉬었습니다."),
    t("d07", Distractor, "{noun:place/에서} 받은 {product} 샘플은 {noun:item/이} 조금 달랐습니다."),
    t("d08", Distractor, "{noun:time/이} 지나서 {product/을} 사지 못했어요."),
    // No keyword at all.
    t("n01", NoKeyword, "오늘은 날씨가 맑아서 {noun:place} 근처를 걷기 좋습니다."),
    t("n02", NoKeyword, "주문한 {noun:item/이} 언제 도착하는지 알려 주세요."),
    t("n03", NoKeyword, "이번 {noun:plan/은} 생각보다 오래 걸렸습니다."),
    t("n04", NoKeyword, "{noun:item/과} {noun:item/을} 함께 확인해 주시겠어요?"),
    t("n05", NoKeyword, "주문한 물건의 {noun:money/을} 다시 확인하고 싶어요."),
    t("n06", NoKeyword, "{noun:plan/은} 다음 주 월요일로 미뤄졌습니다."),
    t("n07", NoKeyword, "{noun:service/에} 관한 문의는 고객센터로 연락해 주세요."),
    t("n08", NoKeyword, "{noun:money/은} 매달 첫째 주에 새로 바뀝니다."),
    t("n09", NoKeyword, "이 제품은 가까운 {noun:place/에서도} 구매할 수 있나요?"),
    t("n10", NoKeyword, "{noun:time/이} 바뀌었다는 안내 문자를 받았어요."),
    t("n11", NoKeyword, "주말에는 {noun:place/이} 붐비니 평일에 방문해 주세요."),
    t("n12", NoKeyword, "지난달보다 {noun:money/이} 조금 올랐네요."),
    t("n13", NoKeyword, "{noun:service} 문의가 많아 답변이 늦어질 수 있습니다."),
    t("n14", NoKeyword, "어제 {noun:place/에서} 산 {noun:item/이} 마음에 들어요."),
    t("n15", NoKeyword, "약은 아이들 손이 닿지 않는 곳에 두세요."),
    t("n16", NoKeyword, "{noun:place/에서} 약을 받을 때 설명을 잘 들어 두세요."),
    t("n17", NoKeyword, "이 약은 식사와 상관없이 드셔도 됩니다."),
    t("n18", NoKeyword, "먹다 남은 약은 {noun:place/에} 가져다주세요."),
];

/// The semantic class of a distractor noun, so that a template asks for a noun that fits
/// (`{noun:place/에서}`: 편의점에서, not 영수증에서).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NounKind {
    /// Somewhere to go: 약국, 마트, 회사.
    Place,
    /// A schedule: 영업시간, 휴무일.
    Time,
    /// An amount of money: 가격, 배송비.
    Money,
    /// A shop's service: 배송, 환불.
    Service,
    /// A thing: 영수증, 상자, 우산.
    Item,
    /// An undertaking: 출장, 회의, 이사.
    Plan,
}

impl NounKind {
    /// Every kind, in declaration order.
    pub const ALL: [NounKind; 6] = [
        NounKind::Place,
        NounKind::Time,
        NounKind::Money,
        NounKind::Service,
        NounKind::Item,
        NounKind::Plan,
    ];

    /// The name used in templates (`place`).
    pub fn name(self) -> &'static str {
        match self {
            NounKind::Place => "place",
            NounKind::Time => "time",
            NounKind::Money => "money",
            NounKind::Service => "service",
            NounKind::Item => "item",
            NounKind::Plan => "plan",
        }
    }

    /// The general nouns of this kind. The builder drops any that contains a surface of its
    /// dictionary, so a distractor can never become a keyword by accident.
    #[rustfmt::skip] // One line per kind.
    pub fn nouns(self) -> &'static [&'static str] {
        match self {
            NounKind::Place => &["약국", "편의점", "마트", "매장", "회사", "사무실", "백화점", "도서관", "공원", "지하철역", "터미널", "고객센터"],
            NounKind::Time => &["영업시간", "점심시간", "휴무일", "마감시간", "운영시간", "배송일정"],
            NounKind::Money => &["가격", "배송비", "주차비", "포장비", "할인율", "적립금", "회비", "수수료"],
            NounKind::Service => &["배송", "교환", "환불", "예약", "할인", "회원가입", "주차", "포장"],
            NounKind::Item => &["영수증", "상자", "쿠폰", "안내문", "라벨", "우산", "가방", "지갑", "충전기", "택배", "카드", "달력"],
            NounKind::Plan => &["출장", "회의", "여행", "약속", "시험", "이사", "면접", "모임", "운동"],
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Every distractor noun, all kinds together.
pub fn distractor_nouns() -> impl Iterator<Item = &'static str> {
    NounKind::ALL
        .into_iter()
        .flat_map(|k| k.nouns().iter().copied())
}

/// Whether a symptom-category entry names an efficacy (진통, 해열, 진해) rather than a complaint
/// (두통, 기침), so that `{effect}` slots (`진통 효과가 있는`) and `{symptom}` slots (`두통이 있을
/// 때`) each get words that fit.
///
/// The dictionary has no field for this, so it is read from the definition's closing words, as
/// the bundled definitions are written: an efficacy "…작용이다", "…효능이다" or "…일이다"; a
/// complaint "…증상이다", "…통증이다", "…상태이다". A reflex (기침: "…반사 작용이다") is a complaint.
pub fn is_effect(entry: &Entry) -> bool {
    let definition = entry.definition.trim_end().trim_end_matches('.');
    entry.category == Category::Symptom
        && ["작용이다", "효능이다", "일이다"]
            .iter()
            .any(|end| definition.ends_with(end))
        && !definition.ends_with("반사 작용이다")
}

/// Which entries a dictionary slot draws from: a category, or the efficacy half of the symptoms
/// (see [`is_effect`]; `{symptom}` then draws the complaint half).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pool {
    Category(Category),
    Effect,
}

const N_CATEGORIES: usize = Category::ALL.len();
const N_POOLS: usize = N_CATEGORIES + 1;

fn cat_index(category: Category) -> usize {
    Category::ALL
        .iter()
        .position(|&c| c == category)
        .unwrap_or(0)
}

impl Pool {
    fn parse(name: &str) -> Option<Pool> {
        match name {
            "effect" => Some(Pool::Effect),
            _ => Category::from_name(name).map(Pool::Category),
        }
    }

    fn index(self) -> usize {
        match self {
            Pool::Category(c) => cat_index(c),
            Pool::Effect => N_CATEGORIES,
        }
    }
}

/// What a slot is filled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    Term(Pool),
    List(Pool),
    /// The surface of an earlier `Term` slot, by slot index (0-based).
    Ref(usize),
    /// A fixed surface, labelled when the dictionary knows it (`{=효능·효과}`).
    Keyword(&'static str),
    Noun(NounKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    None,
    Alternating(Particle),
    Fixed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    kind: SlotKind,
    suffix: &'static str,
    tail: Tail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Text(&'static str),
    Slot(Slot),
}

/// A template pattern that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {id}: {message}")]
pub struct TemplateError {
    /// The template's id.
    pub id: &'static str,
    /// What is wrong.
    pub message: String,
}

impl TemplateSpec {
    fn parse(&self) -> Result<Vec<Piece>, TemplateError> {
        let err = |message: String| TemplateError {
            id: self.id,
            message,
        };
        let mut pieces = Vec::new();
        let mut slots: Vec<SlotKind> = Vec::new();
        let mut rest = self.pattern;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                pieces.push(Piece::Text(rest));
                break;
            };
            if open > 0 {
                pieces.push(Piece::Text(&rest[..open]));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| err("unclosed `{`".into()))?;
            let body = &after[..close];
            rest = &after[close + 1..];

            let (head, tail) = match body.split_once('/') {
                Some((head, particle)) if !particle.is_empty() => {
                    let tail =
                        Particle::parse(particle).map_or(Tail::Fixed(particle), Tail::Alternating);
                    (head, tail)
                }
                Some(_) => return Err(err(format!("empty particle in `{{{body}}}`"))),
                None => (body, Tail::None),
            };
            let (name, suffix) = head.split_once('+').unwrap_or((head, ""));
            let pool = |name: &str| {
                Pool::parse(name).ok_or_else(|| err(format!("unknown category `{name}`")))
            };
            let kind = if let Some(surface) = name.strip_prefix('=') {
                if surface.is_empty() || !suffix.is_empty() {
                    return Err(err(format!("bad keyword slot `{{{body}}}`")));
                }
                SlotKind::Keyword(surface)
            } else if let Some(kind) = name.strip_prefix("noun:") {
                SlotKind::Noun(
                    NounKind::from_name(kind)
                        .ok_or_else(|| err(format!("unknown noun kind `{kind}`")))?,
                )
            } else if let Some(cat) = name.strip_prefix("list:") {
                SlotKind::List(pool(cat)?)
            } else if let Some(n) = name.strip_prefix('@') {
                let n: usize = n
                    .parse()
                    .map_err(|_| err(format!("bad reference `{name}`")))?;
                match n.checked_sub(1).and_then(|i| slots.get(i).map(|k| (i, k))) {
                    Some((i, SlotKind::Term(_))) => SlotKind::Ref(i),
                    _ => {
                        return Err(err(format!(
                            "`{name}` must name an earlier single-term slot"
                        )));
                    }
                }
            } else {
                SlotKind::Term(pool(name)?)
            };
            slots.push(kind);
            pieces.push(Piece::Slot(Slot { kind, suffix, tail }));
        }
        if pieces
            .iter()
            .any(|p| matches!(p, Piece::Text(s) if s.contains('}')))
        {
            return Err(err("stray `}`".into()));
        }
        Ok(pieces)
    }

    /// Every piece of text this template can contribute besides its slot fillers: the literal
    /// text, compound suffixes and particle forms. `{=…}` surfaces are not included: they are
    /// keywords when the dictionary has them (the builder checks them as literals otherwise).
    pub fn literals(&self) -> Result<Vec<&'static str>, TemplateError> {
        let mut out = Vec::new();
        for piece in self.parse()? {
            match piece {
                Piece::Text(s) => out.push(s),
                Piece::Slot(slot) => {
                    if !slot.suffix.is_empty() {
                        out.push(slot.suffix);
                    }
                    match slot.tail {
                        Tail::None => {}
                        Tail::Fixed(s) => out.push(s),
                        Tail::Alternating(p) => out.extend([p.after_consonant, p.after_vowel]),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether the template has at least one dictionary slot.
    pub fn has_keywords(&self) -> bool {
        self.style != Style::NoKeyword
    }
}

// ---------------------------------------------------------------------------------------------
// Examples and output records
// ---------------------------------------------------------------------------------------------

/// One inserted surface: character offsets into [`Example::text`] and the gold label it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// First character (Unicode scalar), inclusive.
    pub start: usize,
    /// Last character, exclusive.
    pub end: usize,
    /// The dictionary form of the surface (its term, also when the surface is an alias).
    pub label: String,
}

/// One generated sentence with its gold keywords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// `{prefix}-{index:06}`, unique within one build.
    pub id: String,
    /// The sentence.
    pub text: String,
    /// Dictionary forms in order of first appearance, each once.
    pub labels: Vec<String>,
    /// The category of each label, parallel to `labels`.
    pub categories: Vec<Category>,
    /// Every inserted surface, in text order (a term mentioned twice has two spans).
    pub spans: Vec<Span>,
    /// The id of the template it came from.
    pub template_id: String,
    /// Whether a label is a held-out term (see [`crate::split::HeldOutSplit`]).
    pub held_out: bool,
}

impl Example {
    /// The `{"text","labels"}` record.
    pub fn to_sft(&self) -> SftRecord {
        SftRecord {
            text: self.text.clone(),
            labels: self.labels.clone(),
        }
    }

    /// The `{"instruction","input","output"}` record, `output` being the labels as a compact
    /// JSON array string (`["진통","해열"]`); [`DEFAULT_INSTRUCTION`] is a ready instruction.
    pub fn to_instruction(&self, instruction: &str) -> InstructionRecord {
        self.to_sft().to_instruction(instruction)
    }
}

// ---------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------

/// Why a dataset could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A rate outside `[0, 1]`.
    #[error("{name} must be in [0, 1], got {value}")]
    InvalidRate {
        /// The setter.
        name: &'static str,
        /// The value given.
        value: f32,
    },
    /// A template that does not parse.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A template whose literal text contains a dictionary surface, which would be an
    /// unlabelled keyword in every sentence made from it.
    #[error(
        "template {id}: literal text {literal:?} contains the dictionary surface {surface:?}; \
         reword the template or drop the entry"
    )]
    TemplateLiteral {
        /// The template's id.
        id: &'static str,
        /// The literal piece.
        literal: &'static str,
        /// The surface found in it.
        surface: String,
    },
    /// A held-out term that is not in the dictionary.
    #[error("held-out term {term:?} is not a dictionary term")]
    UnknownTerm {
        /// The term.
        term: String,
    },
    /// No template can be filled in some mode (the dictionary lacks the categories it needs).
    #[error("no template can be filled for {mode} examples from this dictionary")]
    NoTemplate {
        /// `keyword`, `no-keyword` or `held-out`.
        mode: &'static str,
    },
    /// Every draw for one example was rejected.
    #[error(
        "example {index}: every one of {attempts} drawn sentences contained an unlabelled surface"
    )]
    Exhausted {
        /// The example's index.
        index: usize,
        /// How many draws were made.
        attempts: usize,
    },
}

/// Builds a seeded synthetic dataset from a dictionary.
///
/// ```
/// use kwx_data::builder::{DEFAULT_INSTRUCTION, DatasetBuilder};
/// use kwx_data::dictionary::Dictionary;
///
/// let examples = DatasetBuilder::new(Dictionary::bundled()).seed(7).n(100).build()?;
/// assert_eq!(examples.len(), 100);
/// let record = examples[0].to_instruction(DEFAULT_INSTRUCTION);
/// assert_eq!(record.input, examples[0].text);
/// # Ok::<(), kwx_data::builder::BuildError>(())
/// ```
#[derive(Clone)]
pub struct DatasetBuilder<'d> {
    dictionary: &'d Dictionary,
    seed: u64,
    n: usize,
    alias_rate: f32,
    no_keyword_rate: f32,
    held_out: BTreeSet<String>,
    held_out_rate: f32,
    id_prefix: String,
}

impl fmt::Debug for DatasetBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatasetBuilder")
            .field("seed", &self.seed)
            .field("n", &self.n)
            .field("alias_rate", &self.alias_rate)
            .field("no_keyword_rate", &self.no_keyword_rate)
            .field("held_out", &self.held_out.len())
            .field("held_out_rate", &self.held_out_rate)
            .field("id_prefix", &self.id_prefix)
            .finish_non_exhaustive()
    }
}

impl<'d> DatasetBuilder<'d> {
    /// A builder over `dictionary` with seed 0, 1,000 examples, alias rate 0.15 and
    /// no-keyword rate 0.1.
    pub fn new(dictionary: &'d Dictionary) -> Self {
        Self {
            dictionary,
            seed: 0,
            n: 1_000,
            alias_rate: 0.15,
            no_keyword_rate: 0.1,
            held_out: BTreeSet::new(),
            held_out_rate: 0.0,
            id_prefix: "ex".to_owned(),
        }
    }

    /// The seed of the ChaCha8 stream everything is drawn from.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many examples to build.
    #[must_use]
    pub fn n(mut self, n: usize) -> Self {
        self.n = n;
        self
    }

    /// The probability that a slot uses one of the entry's aliases (when it has any) instead of
    /// the term. The label is the term either way.
    #[must_use]
    pub fn alias_rate(mut self, rate: f32) -> Self {
        self.alias_rate = rate;
        self
    }

    /// The fraction of examples drawn from the no-keyword templates.
    #[must_use]
    pub fn no_keyword_rate(mut self, rate: f32) -> Self {
        self.no_keyword_rate = rate;
        self
    }

    /// Terms (and their aliases) that may appear only in examples flagged `held_out`; every other
    /// example is drawn so that no held-out surface occurs anywhere in its text.
    #[must_use]
    pub fn held_out_terms<I, S>(mut self, terms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.held_out = terms.into_iter().map(Into::into).collect();
        self
    }

    /// The fraction of keyword examples that must contain a held-out term (default 0: none).
    #[must_use]
    pub fn held_out_rate(mut self, rate: f32) -> Self {
        self.held_out_rate = rate;
        self
    }

    /// The prefix of example ids (default `ex`).
    #[must_use]
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefix = prefix.into();
        self
    }

    pub(crate) fn current_seed(&self) -> u64 {
        self.seed
    }

    /// Builds the examples. The same settings and seed give the same examples, byte for byte.
    pub fn build(&self) -> Result<Vec<Example>, BuildError> {
        self.build_with_progress(|_| {})
    }

    /// [`DatasetBuilder::build`], calling `on_example(done)` after each example (for a progress
    /// bar); the examples are the same.
    pub fn build_with_progress(
        &self,
        mut on_example: impl FnMut(usize),
    ) -> Result<Vec<Example>, BuildError> {
        for (name, value) in [
            ("alias_rate", self.alias_rate),
            ("no_keyword_rate", self.no_keyword_rate),
            ("held_out_rate", self.held_out_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(BuildError::InvalidRate { name, value });
            }
        }
        let plan = Plan::new(self)?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut out = Vec::with_capacity(self.n);
        for index in 0..self.n {
            out.push(plan.example(self, &mut rng, index)?);
            on_example(index + 1);
        }
        Ok(out)
    }
}

/// Every surface of a dictionary, indexed by first character for a left-to-right scan.
struct SurfaceIndex<'a> {
    by_first: HashMap<char, Vec<(&'a str, usize)>>,
}

impl<'a> SurfaceIndex<'a> {
    fn new(entries: &'a [Entry]) -> Self {
        let mut by_first: HashMap<char, Vec<(&'a str, usize)>> = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            for surface in entry.surfaces() {
                if let Some(c) = surface.chars().next() {
                    by_first.entry(c).or_default().push((surface, i));
                }
            }
        }
        Self { by_first }
    }

    /// `(byte start, byte end, entry)` of every surface occurrence, overlapping ones included.
    fn scan(&self, text: &str, out: &mut Vec<(usize, usize, usize)>) {
        out.clear();
        for (i, c) in text.char_indices() {
            if let Some(candidates) = self.by_first.get(&c) {
                for &(surface, entry) in candidates {
                    if text[i..].starts_with(surface) {
                        out.push((i, i + surface.len(), entry));
                    }
                }
            }
        }
    }

    fn first_match(&self, text: &str) -> Option<String> {
        let mut found = Vec::new();
        self.scan(text, &mut found);
        found.first().map(|&(s, e, _)| text[s..e].to_owned())
    }
}

const N_NOUN_KINDS: usize = NounKind::ALL.len();

fn noun_index(kind: NounKind) -> usize {
    NounKind::ALL.iter().position(|&k| k == kind).unwrap_or(0)
}

/// A parsed template with what it needs from the dictionary.
struct Compiled {
    spec: &'static TemplateSpec,
    pieces: Vec<Piece>,
    /// Distinct entries needed per pool (a list needs at least one).
    demand: [usize; N_POOLS],
    /// Distinct distractor nouns needed per kind.
    nouns: [usize; N_NOUN_KINDS],
    /// Entries of its `{=…}` slots that the dictionary knows.
    keywords: Vec<usize>,
}

impl Compiled {
    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Slot(s) => Some(s),
            Piece::Text(_) => None,
        })
    }

    fn fits(&self, pools: &[Vec<usize>; N_POOLS], nouns: &[Vec<&str>; N_NOUN_KINDS]) -> bool {
        self.demand
            .iter()
            .zip(pools)
            .all(|(&need, pool)| need <= pool.len())
            && self
                .nouns
                .iter()
                .zip(nouns)
                .all(|(&need, pool)| need <= pool.len())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Keyword,
    NoKeyword,
    HeldOut,
}

/// Everything [`DatasetBuilder::build`] precomputes from the dictionary.
struct Plan<'a> {
    entries: &'a [Entry],
    index: SurfaceIndex<'a>,
    templates: Vec<Compiled>,
    /// Entries of the `{=…}` surfaces the dictionary knows.
    keywords: HashMap<&'static str, usize>,
    /// Distractor nouns per kind, those containing a surface removed.
    nouns: [Vec<&'static str>; N_NOUN_KINDS],
    is_held: Vec<bool>,
    /// Entries no surface of which contains a held-out surface, per pool.
    seen: [Vec<usize>; N_POOLS],
    /// Held-out entries, per pool.
    held: [Vec<usize>; N_POOLS],
    /// All entries, per pool.
    all: [Vec<usize>; N_POOLS],
    /// Template indices usable in each mode.
    keyword: Vec<usize>,
    no_keyword: Vec<usize>,
    held_out: Vec<usize>,
}

/// One inserted surface while a sentence is being drawn.
struct Inserted {
    bytes: (usize, usize),
    chars: (usize, usize),
    entry: usize,
}

/// The text under construction, with its length in characters kept alongside.
struct Draft<'s> {
    text: String,
    chars: usize,
    spans: Vec<Inserted>,
    /// Per slot, the entry and surface a `Term` slot was filled with.
    fills: Vec<Option<(usize, &'s str)>>,
    used: Vec<usize>,
    used_nouns: Vec<&'static str>,
}

impl<'s> Draft<'s> {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.chars += s.chars().count();
    }

    fn push_term(&mut self, surface: &'s str, entry: usize) {
        let (b, c) = (self.text.len(), self.chars);
        self.push(surface);
        self.spans.push(Inserted {
            bytes: (b, self.text.len()),
            chars: (c, self.chars),
            entry,
        });
    }

    fn push_particle(&mut self, particle: Particle, word_start: usize) {
        let form = particle.form_after(&self.text[word_start..]);
        self.push(form);
    }
}

impl<'a> Plan<'a> {
    fn new(builder: &DatasetBuilder<'a>) -> Result<Self, BuildError> {
        let dictionary = builder.dictionary;
        let entries = dictionary.entries();
        let index = SurfaceIndex::new(entries);
        let position: HashMap<&str, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.term.as_str(), i))
            .collect();
        let resolve = |surface: &str| {
            dictionary
                .resolve(surface)
                .and_then(|e| position.get(e.term.as_str()).copied())
        };

        let mut templates = Vec::with_capacity(TEMPLATES.len());
        let mut keywords = HashMap::new();
        for spec in TEMPLATES {
            let pieces = spec.parse()?;
            let mut literals = spec.literals()?;
            let mut demand = [0; N_POOLS];
            let mut nouns = [0; N_NOUN_KINDS];
            let mut fixed = Vec::new();
            for slot in pieces.iter().filter_map(|p| match p {
                Piece::Slot(s) => Some(s),
                Piece::Text(_) => None,
            }) {
                match slot.kind {
                    SlotKind::Term(p) | SlotKind::List(p) => demand[p.index()] += 1,
                    SlotKind::Noun(k) => nouns[noun_index(k)] += 1,
                    SlotKind::Keyword(surface) => match resolve(surface) {
                        Some(entry) => {
                            keywords.insert(surface, entry);
                            fixed.push(entry);
                        }
                        None => literals.push(surface),
                    },
                    SlotKind::Ref(_) => {}
                }
            }
            for literal in literals {
                if let Some(surface) = index.first_match(literal) {
                    return Err(BuildError::TemplateLiteral {
                        id: spec.id,
                        literal,
                        surface,
                    });
                }
            }
            templates.push(Compiled {
                spec,
                pieces,
                demand,
                nouns,
                keywords: fixed,
            });
        }
        let nouns: [Vec<&'static str>; N_NOUN_KINDS] = std::array::from_fn(|k| {
            NounKind::ALL[k]
                .nouns()
                .iter()
                .copied()
                .filter(|noun| index.first_match(noun).is_none())
                .collect()
        });

        let mut is_held = vec![false; entries.len()];
        for term in &builder.held_out {
            match position.get(term.as_str()) {
                Some(&i) => is_held[i] = true,
                None => return Err(BuildError::UnknownTerm { term: term.clone() }),
            }
        }
        let held_surfaces: Vec<&str> = entries
            .iter()
            .zip(&is_held)
            .filter(|(_, held)| **held)
            .flat_map(|(e, _)| e.surfaces())
            .collect();
        let is_seen: Vec<bool> = entries
            .iter()
            .zip(&is_held)
            .map(|(e, &held)| {
                !held
                    && !e
                        .surfaces()
                        .any(|s| held_surfaces.iter().any(|h| s.contains(h)))
            })
            .collect();

        // Symptoms split into efficacies and complaints only when the dictionary has both.
        let symptom = cat_index(Category::Symptom);
        let effects = entries.iter().filter(|e| is_effect(e)).count();
        let symptoms = entries
            .iter()
            .filter(|e| e.category == Category::Symptom)
            .count();
        let split = effects > 0 && effects < symptoms;
        let mut seen: [Vec<usize>; N_POOLS] = std::array::from_fn(|_| Vec::new());
        let mut held: [Vec<usize>; N_POOLS] = std::array::from_fn(|_| Vec::new());
        let mut all: [Vec<usize>; N_POOLS] = std::array::from_fn(|_| Vec::new());
        for (i, entry) in entries.iter().enumerate() {
            let c = cat_index(entry.category);
            let pools: &[usize] = match (c == symptom, split, is_effect(entry)) {
                (false, _, _) => &[c],
                (true, false, _) => &[symptom, Pool::Effect.index()],
                (true, true, true) => &[Pool::Effect.index()],
                (true, true, false) => &[symptom],
            };
            for &p in pools {
                all[p].push(i);
                if is_held[i] {
                    held[p].push(i);
                } else if is_seen[i] {
                    seen[p].push(i);
                }
            }
        }

        let mut keyword = Vec::new();
        let mut no_keyword = Vec::new();
        let mut held_out = Vec::new();
        for (i, t) in templates.iter().enumerate() {
            let seen_keywords = t.keywords.iter().all(|&e| is_seen[e]);
            if !t.spec.has_keywords() {
                if seen_keywords && t.fits(&seen, &nouns) {
                    no_keyword.push(i);
                }
                continue;
            }
            if seen_keywords && t.fits(&seen, &nouns) {
                keyword.push(i);
            }
            let can_hold = t.slots().any(|s| match s.kind {
                SlotKind::Term(p) | SlotKind::List(p) => !held[p.index()].is_empty(),
                SlotKind::Ref(_) | SlotKind::Keyword(_) | SlotKind::Noun(_) => false,
            });
            if can_hold && t.fits(&all, &nouns) {
                held_out.push(i);
            }
        }

        Ok(Self {
            entries,
            index,
            templates,
            keywords,
            nouns,
            is_held,
            seen,
            held,
            all,
            keyword,
            no_keyword,
            held_out,
        })
    }

    fn example(
        &self,
        builder: &DatasetBuilder<'_>,
        rng: &mut ChaCha8Rng,
        index: usize,
    ) -> Result<Example, BuildError> {
        // The mode is drawn once, before any rejection, so rejections cannot skew the rates.
        let mode = if rng.random::<f32>() < builder.no_keyword_rate {
            Mode::NoKeyword
        } else if !builder.held_out.is_empty() && rng.random::<f32>() < builder.held_out_rate {
            Mode::HeldOut
        } else {
            Mode::Keyword
        };
        let (choices, name) = match mode {
            Mode::Keyword => (&self.keyword, "keyword"),
            Mode::NoKeyword => (&self.no_keyword, "no-keyword"),
            Mode::HeldOut => (&self.held_out, "held-out"),
        };
        if choices.is_empty() {
            return Err(BuildError::NoTemplate { mode: name });
        }
        let mut matches = Vec::new();
        let mut template = &self.templates[choices[rng.random_range(0..choices.len())]];
        for attempt in 1..=MAX_ATTEMPTS {
            // Refill the same template first, so that templates whose fills are often rejected
            // (`{effect+제}`: most spell a drug class) are not sampled less; move on only when
            // one seems impossible.
            if attempt % TEMPLATE_ATTEMPTS == 0 {
                template = &self.templates[choices[rng.random_range(0..choices.len())]];
            }
            let Some(draft) = self.draw(builder, rng, template, mode) else {
                continue;
            };
            if self.clean(&draft, mode, &mut matches) {
                return Ok(self.finish(builder, index, template, draft));
            }
        }
        Err(BuildError::Exhausted {
            index,
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Whether every surface in the text lies inside an inserted span and, outside held-out
    /// examples, no held-out surface occurs at all.
    fn clean(
        &self,
        draft: &Draft<'_>,
        mode: Mode,
        matches: &mut Vec<(usize, usize, usize)>,
    ) -> bool {
        self.index.scan(&draft.text, matches);
        matches.iter().all(|&(s, e, entry)| {
            let inside = draft
                .spans
                .iter()
                .any(|sp| sp.bytes.0 <= s && e <= sp.bytes.1);
            inside && (mode == Mode::HeldOut || !self.is_held[entry])
        })
    }

    fn draw(
        &self,
        builder: &DatasetBuilder<'_>,
        rng: &mut ChaCha8Rng,
        template: &Compiled,
        mode: Mode,
    ) -> Option<Draft<'a>> {
        let pools = if mode == Mode::HeldOut {
            &self.all
        } else {
            &self.seen
        };
        let mut draft = Draft {
            text: String::with_capacity(template.spec.pattern.len() + 32),
            chars: 0,
            spans: Vec::new(),
            fills: Vec::new(),
            used: template.keywords.clone(),
            used_nouns: Vec::new(),
        };

        // A held-out example reserves its held-out entry first, for one slot chosen at random.
        let mut forced: Option<(usize, usize)> = None;
        if mode == Mode::HeldOut {
            let holders: Vec<(usize, Pool)> = template
                .slots()
                .enumerate()
                .filter_map(|(i, s)| match s.kind {
                    SlotKind::Term(p) | SlotKind::List(p) if !self.held[p.index()].is_empty() => {
                        Some((i, p))
                    }
                    _ => None,
                })
                .collect();
            let (slot, pool) = *holders.get(rng.random_range(0..holders.len().max(1)))?;
            let entry = pick(rng, &self.held[pool.index()], &draft.used)?;
            draft.used.push(entry);
            forced = Some((slot, entry));
        }

        self.render(builder, rng, template, pools, forced, &mut draft)?;
        Some(draft)
    }

    fn render(
        &self,
        builder: &DatasetBuilder<'_>,
        rng: &mut ChaCha8Rng,
        template: &Compiled,
        pools: &[Vec<usize>; N_POOLS],
        forced: Option<(usize, usize)>,
        draft: &mut Draft<'a>,
    ) -> Option<()> {
        let mut slot_index = 0;
        for piece in &template.pieces {
            let slot = match piece {
                Piece::Text(s) => {
                    draft.push(s);
                    continue;
                }
                Piece::Slot(slot) => slot,
            };
            let forced_here = forced.filter(|&(s, _)| s == slot_index).map(|(_, e)| e);
            let mut word_start = draft.text.len();
            let mut fill = None;
            match slot.kind {
                SlotKind::Term(p) => {
                    let entry = match forced_here {
                        Some(e) => e,
                        None => {
                            let e = pick(rng, &pools[p.index()], &draft.used)?;
                            draft.used.push(e);
                            e
                        }
                    };
                    let surface = self.surface(rng, builder.alias_rate, entry);
                    draft.push_term(surface, entry);
                    fill = Some((entry, surface));
                }
                SlotKind::List(p) => {
                    let pool = &pools[p.index()];
                    let free = pool.iter().filter(|e| !draft.used.contains(e)).count()
                        + usize::from(forced_here.is_some());
                    let len = rng.random_range(2..=3usize).min(free).max(1);
                    let forced_at = forced_here.map(|e| (rng.random_range(0..len), e));
                    let joiner = Joiner::draw(rng);
                    for k in 0..len {
                        let entry = match forced_at {
                            Some((at, e)) if at == k => e,
                            _ => {
                                let e = pick(rng, pool, &draft.used)?;
                                draft.used.push(e);
                                e
                            }
                        };
                        if k > 0 {
                            joiner.push(draft, word_start, k, len);
                        }
                        word_start = draft.text.len();
                        let surface = self.surface(rng, builder.alias_rate, entry);
                        draft.push_term(surface, entry);
                    }
                }
                SlotKind::Ref(i) => {
                    let (entry, surface) = draft.fills.get(i).copied().flatten()?;
                    draft.push_term(surface, entry);
                }
                SlotKind::Keyword(surface) => match self.keywords.get(surface) {
                    Some(&entry) => draft.push_term(surface, entry),
                    None => draft.push(surface),
                },
                SlotKind::Noun(kind) => {
                    let noun = pick(rng, &self.nouns[noun_index(kind)], &draft.used_nouns)?;
                    draft.used_nouns.push(noun);
                    draft.push(noun);
                }
            }
            draft.push(slot.suffix);
            match slot.tail {
                Tail::None => {}
                Tail::Fixed(s) => draft.push(s),
                Tail::Alternating(p) => draft.push_particle(p, word_start),
            }
            draft.fills.push(fill);
            slot_index += 1;
        }
        Some(())
    }

    /// The term, or with probability `alias_rate` one of the aliases when there are any.
    fn surface(&self, rng: &mut ChaCha8Rng, alias_rate: f32, entry: usize) -> &'a str {
        let entry = &self.entries[entry];
        if !entry.aliases.is_empty() && rng.random::<f32>() < alias_rate {
            &entry.aliases[rng.random_range(0..entry.aliases.len())]
        } else {
            &entry.term
        }
    }

    fn finish(
        &self,
        builder: &DatasetBuilder<'_>,
        index: usize,
        template: &Compiled,
        draft: Draft<'_>,
    ) -> Example {
        let mut order: Vec<usize> = Vec::new();
        for span in &draft.spans {
            if !order.contains(&span.entry) {
                order.push(span.entry);
            }
        }
        let spans = draft
            .spans
            .iter()
            .map(|s| Span {
                start: s.chars.0,
                end: s.chars.1,
                label: self.entries[s.entry].term.clone(),
            })
            .collect();
        Example {
            id: format!("{}-{index:06}", builder.id_prefix),
            text: draft.text,
            labels: order
                .iter()
                .map(|&e| self.entries[e].term.clone())
                .collect(),
            categories: order.iter().map(|&e| self.entries[e].category).collect(),
            spans,
            template_id: template.spec.id.to_owned(),
            held_out: order.iter().any(|&e| self.is_held[e]),
        }
    }
}

/// A random element of `pool` not in `used`: a few random probes, then a scan from a random start.
fn pick<T: Copy + PartialEq>(rng: &mut ChaCha8Rng, pool: &[T], used: &[T]) -> Option<T> {
    if pool.is_empty() {
        return None;
    }
    for _ in 0..8 {
        let e = pool[rng.random_range(0..pool.len())];
        if !used.contains(&e) {
            return Some(e);
        }
    }
    let start = rng.random_range(0..pool.len());
    (0..pool.len())
        .map(|i| pool[(start + i) % pool.len()])
        .find(|e| !used.contains(e))
}

/// How the items of a `{list:…}` slot are joined.
#[derive(Clone, Copy)]
enum Joiner {
    /// `A·B·C`
    Dot,
    /// `A, B, C`
    Comma,
    /// `A와 B`, `A, B와 C`
    And,
    /// `A 및 B`, `A, B 및 C`
    Mit,
}

impl Joiner {
    fn draw(rng: &mut ChaCha8Rng) -> Self {
        [Joiner::Dot, Joiner::Comma, Joiner::And, Joiner::Mit][rng.random_range(0..4)]
    }

    /// Pushes the separator before item `k` of `len`; `prev_start` is where item `k - 1` began.
    fn push(self, draft: &mut Draft<'_>, prev_start: usize, k: usize, len: usize) {
        let last = k + 1 == len;
        match self {
            Joiner::Dot => draft.push("·"),
            Joiner::Comma => draft.push(", "),
            Joiner::And if last => {
                draft.push_particle(alternating("과", "와"), prev_start);
                draft.push(" ");
            }
            Joiner::Mit if last => draft.push(" 및 "),
            Joiner::And | Joiner::Mit => draft.push(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_template_parses() {
        for spec in TEMPLATES {
            let pieces = spec.parse().unwrap_or_else(|e| panic!("{e}"));
            let slots = pieces
                .iter()
                .filter(|p| matches!(p, Piece::Slot(_)))
                .count();
            let keyword = pieces.iter().any(|p| {
                matches!(
                    p,
                    Piece::Slot(Slot {
                        kind: SlotKind::Term(_) | SlotKind::List(_),
                        ..
                    })
                )
            });
            assert_eq!(keyword, spec.has_keywords(), "{}", spec.id);
            assert!(slots > 0 || spec.style == Style::NoKeyword, "{}", spec.id);
        }
        let mut ids: Vec<_> = TEMPLATES.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), TEMPLATES.len(), "template ids must be unique");
    }

    #[test]
    fn slot_syntax() {
        let spec = t(
            "x",
            Statement,
            "{dosage_form+형/으로} 나온 {list:symptom/에} {@1/도} 끝",
        );
        let pieces = spec.parse().unwrap_or_default();
        assert_eq!(
            pieces[0],
            Piece::Slot(Slot {
                kind: SlotKind::Term(Pool::Category(Category::DosageForm)),
                suffix: "형",
                tail: Tail::Alternating(instrumental("으로", "로")),
            })
        );
        assert_eq!(pieces[1], Piece::Text(" 나온 "));
        assert!(matches!(
            pieces[2],
            Piece::Slot(Slot {
                kind: SlotKind::List(Pool::Category(Category::Symptom)),
                ..
            })
        ));
        assert!(matches!(
            pieces[4],
            Piece::Slot(Slot {
                kind: SlotKind::Ref(0),
                tail: Tail::Fixed("도"),
                ..
            })
        ));

        let keyword = t("k", Insert, "{=효능·효과/은} 끝")
            .parse()
            .unwrap_or_default();
        assert_eq!(
            keyword[0],
            Piece::Slot(Slot {
                kind: SlotKind::Keyword("효능·효과"),
                suffix: "",
                tail: Tail::Alternating(alternating("은", "는")),
            })
        );
        assert!(matches!(
            t("e", Statement, "{effect}").parse().unwrap_or_default()[0],
            Piece::Slot(Slot {
                kind: SlotKind::Term(Pool::Effect),
                ..
            })
        ));

        for bad in [
            "{symptom",
            "{nosuch}",
            "{@2} {symptom}",
            "{noun:nosuch}",
            "{list:symptom} {@1}",
            "{symptom/}",
            "{=}",
            "{=효능+형}",
            "a}",
        ] {
            assert!(t("bad", Statement, bad).parse().is_err(), "{bad}");
        }
    }

    #[test]
    fn final_sounds() {
        assert_eq!(final_sound("캡슐"), FinalSound::Rieul);
        assert_eq!(final_sound("노인"), FinalSound::Consonant);
        assert_eq!(final_sound("파스"), FinalSound::Vowel);
        assert_eq!(final_sound("500mg"), FinalSound::Consonant);
        assert_eq!(final_sound("10mL"), FinalSound::Vowel);
        assert_eq!(final_sound("비타민C"), FinalSound::Vowel);
        assert_eq!(final_sound("타이레놀(500)"), FinalSound::Rieul);
        assert_eq!(final_sound(""), FinalSound::Vowel);
    }
}
