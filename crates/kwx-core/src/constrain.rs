//! Constrained decoding: the model can only write a JSON array of strings (`["진통", "해열"]`),
//! and in extractive mode only strings that occur in the input text.
//!
//! The grammar runs on the bytes the tokenizer decodes, so a token may cross several grammar
//! states (`"]`, `",`, `["`) and a Hangul syllable may arrive as three byte-fallback tokens
//! (`<0xED><0x95><0x9C>` = `한`): a string can only close after a complete UTF-8 character.
//! A token is allowed iff all its bytes keep the automaton valid. The mask is computed the way
//! Willard & Louf ("Efficient Guided Generation for Large Language Models", 2023, outlines)
//! and llama.cpp's grammar sampler (`llama-grammar.cpp`, `llama_grammar_reject_candidates`) do
//! it, as one walk of a byte trie over the whole vocabulary that drops a subtree at its first
//! invalid byte; extractive mode walks a suffix automaton of the source (Blumer et al., 1985)
//! alongside. Masks are cached per automaton state; the characters of the current string and
//! the number of items are kept out of the cache key by recording, per token, how many
//! characters it adds to the open string and how many strings it opens (its requirement,
//! compared with what is left at mask time: both limits are monotone).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::generate::TokenConstraint;
use crate::tokenizer::GemmaTokenizer;

/// The bytes every token id contributes to decoded text, with a byte trie over them. Build it
/// once per tokenizer and share it (`Arc`) between constraints: it also caches the masks of
/// [`OutputMode::Json`], which depend on nothing but the automaton state.
pub struct TokenBytes {
    pieces: Vec<Option<Box<[u8]>>>,
    trie: Trie,
    json_masks: Mutex<HashMap<JsonKey, Arc<Allowed>>>,
}

impl fmt::Debug for TokenBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBytes")
            .field("tokens", &self.pieces.len())
            .field("trie_nodes", &self.trie.nodes.len())
            .finish_non_exhaustive()
    }
}

/// Gemma's decoder, the one whose output [`TokenBytes::new`] reproduces token by token.
const GEMMA_DECODER: &str = r#"{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"}]}"#;

impl TokenBytes {
    /// The bytes of every token of `tokenizer`, as its decoder (Gemma's: `▁` → space, byte
    /// fallback, fuse) produces them: a piece is its string with `▁` replaced by a space, a
    /// byte piece `<0xAB>` is the byte 0xAB. Special added tokens (`<bos>`, `<end_of_turn>`,
    /// image tokens) and added control tags (`<unusedN>`, `<mask>`, `[multimodal]`, Gemma's
    /// HTML tags such as `<table>`: `<…>` or `[…]` without spaces) have no bytes and are never
    /// allowed; other added tokens (domain words added by `kwx_tokenizer::extend`) are their
    /// decoded content.
    ///
    /// # Errors
    /// A tokenizer whose decoder is not Gemma's: with another decoder a token's text could
    /// depend on its neighbours.
    pub fn new(tokenizer: &GemmaTokenizer) -> Result<Self> {
        let inner = tokenizer.inner();
        let decoder = serde_json::to_value(inner.get_decoder()).map_err(|e| Error::Tokenizer {
            path: None,
            message: e.to_string(),
        })?;
        let expected: serde_json::Value =
            serde_json::from_str(GEMMA_DECODER).map_err(|e| Error::Tokenizer {
                path: None,
                message: e.to_string(),
            })?;
        if decoder != expected {
            return Err(Error::Tokenizer {
                path: None,
                message: format!(
                    "constrained decoding needs Gemma's decoder {GEMMA_DECODER}, found {decoder}"
                ),
            });
        }
        let added = inner.get_added_tokens_decoder();
        let n = added
            .keys()
            .map(|&id| id as usize + 1)
            .max()
            .unwrap_or(0)
            .max(inner.get_vocab_size(true));
        let pieces = (0..n)
            .map(|id| {
                let id = id as u32;
                let token = inner.id_to_token(id)?;
                if let Some(a) = added.get(&id)
                    && (a.special || is_control_tag(&a.content))
                {
                    return None;
                }
                Some(match byte_piece(&token) {
                    Some(b) => vec![b],
                    None => token.replace('▁', " ").into_bytes(),
                })
            })
            .collect();
        Ok(Self::from_pieces(pieces))
    }

    /// A table from explicit bytes per id (`None`: never allowed). Empty pieces are treated as
    /// `None` (a token that writes nothing could repeat forever), and so are pieces over
    /// 65,535 bytes.
    pub fn from_pieces(pieces: Vec<Option<Vec<u8>>>) -> Self {
        let pieces: Vec<Option<Box<[u8]>>> = pieces
            .into_iter()
            .map(|p| {
                p.filter(|b| !b.is_empty() && b.len() <= usize::from(u16::MAX))
                    .map(Vec::into_boxed_slice)
            })
            .collect();
        let trie = Trie::new(&pieces);
        Self {
            pieces,
            trie,
            json_masks: Mutex::new(HashMap::new()),
        }
    }

    /// Number of token ids (the largest id + 1).
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether the table has no ids.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The bytes of `id`, or `None` for a token the grammar never allows.
    pub fn get(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize)?.as_deref()
    }

    fn json_mask(&self, key: JsonKey, grammar: &Grammar) -> Arc<Allowed> {
        let cached = self
            .json_masks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(allowed) = cached {
            return allowed;
        }
        let allowed = Arc::new(self.walk(grammar, key.state));
        self.json_masks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert(allowed)
            .clone()
    }

    /// Every token whose bytes keep `grammar` valid from `start`, with its requirement.
    fn walk(&self, grammar: &Grammar, start: State) -> Allowed {
        let nodes = &self.trie.nodes;
        let mut stack = vec![start; self.trie.max_depth + 1];
        let mut list = Vec::new();
        let mut i = 0;
        while let Some(node) = nodes.get(i) {
            let depth = usize::from(node.depth);
            match grammar.step(stack[depth - 1], node.byte) {
                None => i = node.skip as usize,
                Some(s) => {
                    let end = nodes
                        .get(i + 1)
                        .map_or(self.trie.tokens.len(), |n| n.tokens as usize);
                    let tokens = &self.trie.tokens[node.tokens as usize..end];
                    if !tokens.is_empty() {
                        let req = s.requirement();
                        list.extend(tokens.iter().map(|&t| (t, req)));
                    }
                    stack[depth] = s;
                    i += 1;
                }
            }
        }
        if list.len() * 8 < self.pieces.len() {
            return Allowed::Sparse(list.into_boxed_slice());
        }
        let mut reqs = vec![NEVER; self.pieces.len()];
        for (t, req) in list {
            reqs[t as usize] = req;
        }
        Allowed::Dense(reqs.into_boxed_slice())
    }
}

/// `<0xAB>` → 0xAB, exactly as `tokenizers`' `ByteFallback` decoder reads it.
fn byte_piece(token: &str) -> Option<u8> {
    if token.len() == 6 && token.starts_with("<0x") && token.ends_with('>') {
        u8::from_str_radix(token.get(3..5)?, 16).ok()
    } else {
        None
    }
}

/// `<unused0>`, `<mask>`, `[multimodal]`, `<table>`: markup, not text.
fn is_control_tag(content: &str) -> bool {
    let b = content.as_bytes();
    b.len() >= 3
        && matches!((b[0], b[b.len() - 1]), (b'<', b'>') | (b'[', b']'))
        && b.iter().all(|c| c.is_ascii_graphic())
}

/// All token byte strings in one trie, in preorder, so a walk is a linear scan that jumps over
/// a subtree (`skip`) at its first invalid byte.
struct Trie {
    nodes: Vec<Node>,
    /// Token ids by node: node `i` ends `tokens[nodes[i].tokens..nodes[i + 1].tokens]`.
    tokens: Vec<u32>,
    max_depth: usize,
}

struct Node {
    /// The first node after this node's subtree.
    skip: u32,
    /// Where this node's tokens start in [`Trie::tokens`].
    tokens: u32,
    /// 1 for a first byte.
    depth: u16,
    byte: u8,
}

impl Trie {
    fn new(pieces: &[Option<Box<[u8]>>]) -> Self {
        let mut sorted: Vec<(&[u8], u32)> = pieces
            .iter()
            .enumerate()
            .filter_map(|(id, p)| Some((p.as_deref()?, id as u32)))
            .collect();
        sorted.sort_unstable();
        let mut nodes: Vec<Node> = Vec::new();
        let mut tokens = Vec::with_capacity(sorted.len());
        let mut max_depth = 0;
        let mut prev: &[u8] = &[];
        for &(bytes, id) in &sorted {
            let common = prev.iter().zip(bytes).take_while(|(a, b)| a == b).count();
            // Sorted order puts a prefix before its extensions, so every token ending at a
            // node is pushed before the node's first child.
            for (k, &byte) in bytes.iter().enumerate().skip(common) {
                nodes.push(Node {
                    skip: 0,
                    tokens: tokens.len() as u32,
                    depth: (k + 1) as u16,
                    byte,
                });
            }
            tokens.push(id);
            max_depth = max_depth.max(bytes.len());
            prev = bytes;
        }
        let n = nodes.len() as u32;
        let mut open: Vec<usize> = Vec::new();
        for i in 0..nodes.len() {
            while let Some(&j) = open.last() {
                if nodes[j].depth < nodes[i].depth {
                    break;
                }
                nodes[j].skip = i as u32;
                open.pop();
            }
            open.push(i);
        }
        for j in open {
            nodes[j].skip = n;
        }
        Self {
            nodes,
            tokens,
            max_depth,
        }
    }
}

/// What a constrained row may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputMode {
    /// Any JSON array of non-empty strings.
    Json,
    /// A JSON array of strings that each occur in `source` (byte for byte, after unescaping).
    Extractive {
        /// The input text the keywords are taken from.
        source: String,
    },
}

/// A requirement no state satisfies.
const NEVER: u32 = u32::MAX;

/// Allowed tokens of one automaton state, each with its requirement: the characters it adds to
/// the string open in that state (low 16 bits) and the strings it opens, counting one after a
/// trailing comma (high 16 bits). At mask time a token is allowed iff both fit what is left.
enum Allowed {
    /// Requirement per token id, [`NEVER`] for disallowed ones.
    Dense(Box<[u32]>),
    /// Allowed tokens and their requirements.
    Sparse(Box<[(u32, u32)]>),
}

impl Allowed {
    fn fits(req: u32, chars_left: u16, items_left: u16) -> bool {
        (req & 0xFFFF) <= u32::from(chars_left) && (req >> 16) <= u32::from(items_left)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    /// Before `[`.
    Start,
    /// After `[`.
    Open,
    /// Inside a string.
    Str,
    /// After a string's closing quote.
    AfterStr,
    /// After `,`.
    AfterComma,
    /// After `]`: only an end token may follow.
    Done,
}

/// Position inside a string: a UTF-8 DFA (the Unicode standard's table 3-7: no overlong
/// forms, no surrogates, nothing above U+10FFFF) plus the escape state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Utf8 {
    /// At a character boundary.
    Boundary,
    /// After `\`.
    Escape,
    /// 1 continuation byte to go, in `80..=BF`.
    Tail1,
    /// 2 to go, the next in `80..=BF`.
    Tail2,
    /// 3 to go, the next in `80..=BF`.
    Tail3,
    /// After `E0`: 2 to go, the next in `A0..=BF`.
    E0,
    /// After `ED`: 2 to go, the next in `80..=9F`.
    Ed,
    /// After `F0`: 3 to go, the next in `90..=BF`.
    F0,
    /// After `F4`: 3 to go, the next in `80..=8F`.
    F4,
}

impl Utf8 {
    /// The state after a lead byte, `None` for a byte that cannot start a multi-byte character.
    fn lead(b: u8) -> Option<Self> {
        Some(match b {
            0xC2..=0xDF => Self::Tail1,
            0xE0 => Self::E0,
            0xE1..=0xEC | 0xEE..=0xEF => Self::Tail2,
            0xED => Self::Ed,
            0xF0 => Self::F0,
            0xF1..=0xF3 => Self::Tail3,
            0xF4 => Self::F4,
            _ => return None,
        })
    }

    /// The range of the next continuation byte and the state after it.
    fn tail(self) -> Option<(u8, u8, Self)> {
        Some(match self {
            Self::Tail1 => (0x80, 0xBF, Self::Boundary),
            Self::Tail2 => (0x80, 0xBF, Self::Tail1),
            Self::Tail3 => (0x80, 0xBF, Self::Tail2),
            Self::E0 => (0xA0, 0xBF, Self::Tail1),
            Self::Ed => (0x80, 0x9F, Self::Tail1),
            Self::F0 => (0x90, 0xBF, Self::Tail2),
            Self::F4 => (0x80, 0x8F, Self::Tail2),
            Self::Boundary | Self::Escape => return None,
        })
    }
}

/// The automaton state. In a walk of the trie, `base` marks a string that was already open when
/// the walk began: its `chars` count from the walk's start, and `req` keeps what the walk added
/// to it once it closes. Kept to 16 bytes: the walk copies one per trie node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct State {
    phase: Phase,
    /// Length of the current whitespace run.
    ws: u8,
    utf8: Utf8,
    /// The current string holds a complete character.
    nonempty: bool,
    base: bool,
    chars: u16,
    req: u16,
    /// Strings that may still be opened ([`UNLIMITED`] when there is no limit).
    items_left: u16,
    /// Suffix-automaton state (extractive mode).
    sam: u32,
}

impl State {
    fn start(items_left: u16) -> Self {
        Self {
            phase: Phase::Start,
            ws: 0,
            utf8: Utf8::Boundary,
            nonempty: false,
            base: false,
            chars: 0,
            req: 0,
            items_left,
            sam: 0,
        }
    }

    /// What a walk from [`Self::key`] needs to end here (see [`Allowed`]).
    fn requirement(&self) -> u32 {
        let chars = if self.base { self.chars } else { self.req };
        let items = UNLIMITED - self.items_left + u16::from(self.phase == Phase::AfterComma);
        u32::from(chars) | u32::from(items) << 16
    }

    /// The state a cached walk starts from: the counters become relative (no token opens
    /// anywhere near [`UNLIMITED`] strings).
    fn key(&self) -> Self {
        Self {
            base: self.phase == Phase::Str,
            chars: 0,
            req: 0,
            items_left: UNLIMITED,
            ..*self
        }
    }
}

const _: () = assert!(std::mem::size_of::<State>() == 16);

/// `items_left` without a limit (reset after every token, so it never runs out).
const UNLIMITED: u16 = u16::MAX;

/// Cache key of a [`OutputMode::Json`] mask, shared by all constraints over one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct JsonKey {
    state: State,
    max_chars: u16,
    max_ws: u8,
}

/// The escapes a string may use, as (written byte, unescaped byte); no `\u`.
const ESCAPES: [(u8, u8); 6] = [
    (b'"', b'"'),
    (b'\\', b'\\'),
    (b'/', b'/'),
    (b'n', b'\n'),
    (b't', b'\t'),
    (b'r', b'\r'),
];

fn unescape(b: u8) -> Option<u8> {
    ESCAPES.iter().find(|(w, _)| *w == b).map(|(_, u)| *u)
}

/// The byte automaton and its options.
#[derive(Debug, Clone)]
struct Grammar {
    max_chars: u16,
    max_ws: u8,
    /// Whether a string can have a first character (false for an extractive source with no
    /// writable character).
    can_open: bool,
    sam: Option<Sam>,
}

impl Grammar {
    #[inline(always)]
    fn step(&self, mut s: State, b: u8) -> Option<State> {
        if s.phase == Phase::Str {
            return self.string_byte(s, b);
        }
        if b == b' ' || b == b'\n' {
            if s.phase == Phase::Done || s.ws >= self.max_ws {
                return None;
            }
            s.ws += 1;
            return Some(s);
        }
        s.ws = 0;
        match (s.phase, b) {
            (Phase::Start, b'[') => s.phase = Phase::Open,
            (Phase::Open | Phase::AfterComma, b'"') if self.can_open && s.items_left > 0 => {
                s.phase = Phase::Str;
                s.utf8 = Utf8::Boundary;
                s.nonempty = false;
                s.base = false;
                s.chars = 0;
                s.items_left -= 1;
                s.sam = 0;
            }
            (Phase::Open | Phase::AfterStr, b']') => s.phase = Phase::Done,
            (Phase::AfterStr, b',') if self.can_open && s.items_left > 0 => {
                s.phase = Phase::AfterComma;
            }
            _ => return None,
        }
        Some(s)
    }

    #[inline(always)]
    fn string_byte(&self, mut s: State, b: u8) -> Option<State> {
        match s.utf8 {
            Utf8::Escape => {
                s.sam = self.sam_step(s.sam, unescape(b)?)?;
                s.utf8 = Utf8::Boundary;
                s.nonempty = true;
            }
            Utf8::Boundary => match b {
                b'"' => {
                    if !s.nonempty {
                        return None;
                    }
                    if s.base {
                        s.req = s.chars;
                        s.base = false;
                    }
                    s.phase = Phase::AfterStr;
                    s.ws = 0;
                }
                b'\\' => {
                    s = self.count(s)?;
                    // Only start an escape that some escaped character can finish.
                    if let Some(sam) = &self.sam
                        && !ESCAPES.iter().any(|&(_, u)| sam.next(s.sam, u).is_some())
                    {
                        return None;
                    }
                    s.utf8 = Utf8::Escape;
                }
                0x20..=0x7F => {
                    s = self.count(s)?;
                    s.sam = self.sam_step(s.sam, b)?;
                    s.nonempty = true;
                }
                _ => {
                    s.utf8 = Utf8::lead(b)?;
                    s = self.count(s)?;
                    s.sam = self.sam_step(s.sam, b)?;
                }
            },
            tail => {
                let (lo, hi, next) = tail.tail()?;
                if !(lo..=hi).contains(&b) {
                    return None;
                }
                s.sam = self.sam_step(s.sam, b)?;
                s.utf8 = next;
                s.nonempty |= next == Utf8::Boundary;
            }
        }
        Some(s)
    }

    /// Counts a new character (at its first byte), refusing one past `max_chars`.
    #[inline(always)]
    fn count(&self, mut s: State) -> Option<State> {
        s.chars += 1;
        (s.chars <= self.max_chars).then_some(s)
    }

    #[inline(always)]
    fn sam_step(&self, state: u32, b: u8) -> Option<u32> {
        match &self.sam {
            Some(sam) => sam.next(state, b),
            None => Some(state),
        }
    }
}

/// Suffix automaton of the source's bytes: a path from the root exists iff it spells a
/// substring, and the state after it is one `u32`.
#[derive(Debug, Clone)]
struct Sam {
    /// Transitions of the root (most used), `u32::MAX` for none.
    root: Box<[u32; 256]>,
    /// Transitions of state `s`: `edges[edge_start[s]..edge_start[s + 1]]`, sorted by byte.
    edge_start: Vec<u32>,
    edges: Vec<(u8, u32)>,
}

impl Sam {
    fn new(text: &[u8]) -> Self {
        const NONE: u32 = u32::MAX;
        let mut len: Vec<u32> = vec![0];
        let mut link: Vec<u32> = vec![NONE];
        let mut next: Vec<Vec<(u8, u32)>> = vec![Vec::new()];
        fn get(next: &[(u8, u32)], c: u8) -> Option<u32> {
            next.binary_search_by_key(&c, |e| e.0)
                .ok()
                .map(|i| next[i].1)
        }
        fn set(next: &mut Vec<(u8, u32)>, c: u8, to: u32) {
            match next.binary_search_by_key(&c, |e| e.0) {
                Ok(i) => next[i].1 = to,
                Err(i) => next.insert(i, (c, to)),
            }
        }
        let mut last = 0u32;
        for &c in text {
            let cur = len.len() as u32;
            len.push(len[last as usize] + 1);
            link.push(NONE);
            next.push(Vec::new());
            let mut p = last;
            while p != NONE && get(&next[p as usize], c).is_none() {
                set(&mut next[p as usize], c, cur);
                p = link[p as usize];
            }
            if p == NONE {
                link[cur as usize] = 0;
            } else if let Some(q) = get(&next[p as usize], c) {
                if len[p as usize] + 1 == len[q as usize] {
                    link[cur as usize] = q;
                } else {
                    let clone = len.len() as u32;
                    len.push(len[p as usize] + 1);
                    link.push(link[q as usize]);
                    next.push(next[q as usize].clone());
                    while p != NONE && get(&next[p as usize], c) == Some(q) {
                        set(&mut next[p as usize], c, clone);
                        p = link[p as usize];
                    }
                    link[q as usize] = clone;
                    link[cur as usize] = clone;
                }
            }
            last = cur;
        }
        let mut root = Box::new([NONE; 256]);
        for &(c, to) in &next[0] {
            root[c as usize] = to;
        }
        let mut edge_start = Vec::with_capacity(next.len() + 1);
        let mut edges = Vec::new();
        for n in &next {
            edge_start.push(edges.len() as u32);
            edges.extend_from_slice(n);
        }
        edge_start.push(edges.len() as u32);
        Self {
            root,
            edge_start,
            edges,
        }
    }

    fn next(&self, state: u32, b: u8) -> Option<u32> {
        if state == 0 {
            let to = self.root[b as usize];
            return (to != u32::MAX).then_some(to);
        }
        let s = state as usize;
        let edges = &self.edges[self.edge_start[s] as usize..self.edge_start[s + 1] as usize];
        edges
            .binary_search_by_key(&b, |e| e.0)
            .ok()
            .map(|i| edges[i].1)
    }
}

/// A [`TokenConstraint`] under which a row writes a JSON array of strings — optional leading
/// whitespace, `[`, strings separated by `,`, `]`, then one of its end tokens — and, in
/// [`OutputMode::Extractive`], only strings that occur in the source.
///
/// Strings hold at least one character, valid UTF-8 only (no overlong forms, surrogates or
/// code points past U+10FFFF), no raw control characters, and the escapes `\"` `\\` `\/` `\n`
/// `\t` `\r`; they close only after a complete character. Whitespace (a space or a newline)
/// between structural tokens comes in runs of at most [`Self::max_whitespace`] characters, so
/// the model cannot loop on it. After generation, read [`Self::json`] and [`Self::strings`]:
/// both are valid even when generation stopped early.
///
/// ```no_run
/// use std::sync::Arc;
/// use kwx_core::{Gemma, GemmaTokenizer, GenerationConfig, Generator, JsonArrayConstraint,
///     OutputMode, TokenBytes, TokenConstraint};
/// # fn run(model: &Gemma) -> kwx_core::Result<()> {
/// let tokenizer = GemmaTokenizer::from_dir("models/gemma-3-270m")?;
/// let bytes = Arc::new(TokenBytes::new(&tokenizer)?);
/// let end = [tokenizer.token_to_id("<end_of_turn>").unwrap_or(106)];
/// let text = "진통과 해열 효과가 있는 파스형 의약품";
/// let mode = OutputMode::Extractive { source: text.into() };
/// let mut c = JsonArrayConstraint::new(bytes, mode, &end).max_items(8);
/// let prompt = tokenizer.encode(text, true)?;
/// let config = GenerationConfig::greedy(64).with_stop_token(end[0]);
/// let rows: &mut [&mut dyn TokenConstraint] = &mut [&mut c];
/// Generator::new(model).generate_batch_constrained(&[prompt], &config, rows, |_| {})?;
/// let keywords: Vec<String> = c.strings(); // each one a substring of `text`
/// # Ok(()) }
/// ```
pub struct JsonArrayConstraint {
    table: Arc<TokenBytes>,
    grammar: Grammar,
    end_ids: Vec<u32>,
    state: State,
    /// An end token followed `]`.
    ended: bool,
    emitted: Vec<u8>,
    /// Where the current string's opening quote is in `emitted`.
    open_at: usize,
    /// Where the comma before the current string is in `emitted`.
    comma_at: Option<usize>,
    /// `emitted` up to the current string's last complete character.
    string_end: usize,
    /// The current string's content, unescaped.
    content: Vec<u8>,
    /// `content` up to its last complete character.
    content_end: usize,
    items: Vec<String>,
    /// Extractive masks by state (JSON masks live in the shared [`TokenBytes`]).
    local: HashMap<State, Arc<Allowed>>,
}

impl fmt::Debug for JsonArrayConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonArrayConstraint")
            .field("extractive", &self.grammar.sam.is_some())
            .field("max_item_chars", &self.grammar.max_chars)
            .field("max_whitespace", &self.grammar.max_ws)
            .field("end_ids", &self.end_ids)
            .field("written", &String::from_utf8_lossy(&self.emitted))
            .field("complete", &self.is_complete())
            .finish_non_exhaustive()
    }
}

impl JsonArrayConstraint {
    /// A constraint over the token table `bytes`; `end_ids` are the tokens that may (and must)
    /// follow `]` — pass the ids that stop generation (`<end_of_turn>`, `<eos>`). Defaults: no
    /// item limit, 48 characters per item, whitespace runs of one character.
    pub fn new(bytes: Arc<TokenBytes>, mode: OutputMode, end_ids: &[u32]) -> Self {
        let (sam, can_open) = match &mode {
            OutputMode::Json => (None, true),
            OutputMode::Extractive { source } => (
                Some(Sam::new(source.as_bytes())),
                source
                    .chars()
                    .any(|c| c >= ' ' || matches!(c, '\n' | '\t' | '\r')),
            ),
        };
        Self {
            table: bytes,
            grammar: Grammar {
                max_chars: 48,
                max_ws: 1,
                can_open,
                sam,
            },
            end_ids: end_ids.to_vec(),
            state: State::start(UNLIMITED),
            ended: false,
            emitted: Vec::new(),
            open_at: 0,
            comma_at: None,
            string_end: 0,
            content: Vec::new(),
            content_end: 0,
            items: Vec::new(),
            local: HashMap::new(),
        }
    }

    /// At most `n` strings (0: only `[]`; 65,535 or more: no limit).
    #[must_use]
    pub fn max_items(mut self, n: usize) -> Self {
        self.state.items_left = u16::try_from(n).unwrap_or(UNLIMITED);
        self
    }

    /// At most `n` characters per string (at least 1; an escape counts as one); a string that
    /// long can only close.
    #[must_use]
    pub fn max_item_chars(mut self, n: usize) -> Self {
        self.grammar.max_chars = n.clamp(1, usize::from(u16::MAX - 1)) as u16;
        self
    }

    /// At most `n` whitespace characters in a row between structural tokens (0: none).
    #[must_use]
    pub fn max_whitespace(mut self, n: usize) -> Self {
        self.grammar.max_ws = n.min(usize::from(u8::MAX)) as u8;
        self
    }

    /// Whether the model closed the array itself.
    pub fn is_complete(&self) -> bool {
        self.state.phase == Phase::Done
    }

    /// The bytes written so far, exactly as the tokenizer decodes the tokens.
    pub fn bytes(&self) -> &[u8] {
        &self.emitted
    }

    /// The array written so far, completed if generation stopped early: an incomplete character
    /// or escape at the end is dropped, a string then empty goes with its comma, and the
    /// string and the array are closed. Always parses as a JSON array of strings.
    pub fn json(&self) -> String {
        let e = &self.emitted;
        let mut out: Vec<u8> = match self.state.phase {
            Phase::Start => [e.as_slice(), b"[]"].concat(),
            Phase::Open | Phase::AfterStr => [e.as_slice(), b"]"].concat(),
            Phase::AfterComma => [&e[..self.comma_at.unwrap_or(e.len())], b"]"].concat(),
            Phase::Str if self.content_end == 0 => {
                let cut = self.comma_at.unwrap_or(self.open_at);
                [&e[..cut], b"]"].concat()
            }
            Phase::Str => [&e[..self.string_end], b"\"]"].concat(),
            Phase::Done => e.clone(),
        };
        // Never lossy: only complete characters are kept.
        if std::str::from_utf8(&out).is_err() {
            out.clear();
            out.extend_from_slice(b"[]");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The strings of [`Self::json`], unescaped.
    pub fn strings(&self) -> Vec<String> {
        let mut items = self.items.clone();
        if self.state.phase == Phase::Str && self.content_end > 0 {
            items.push(String::from_utf8_lossy(&self.content[..self.content_end]).into_owned());
        }
        items
    }

    /// Whether `token` may come next (what [`TokenConstraint::mask`] computes for every id).
    pub fn allows(&self, token: u32) -> bool {
        if self.ended {
            return false;
        }
        if self.end_ids.contains(&token) {
            return self.state.phase == Phase::Done;
        }
        let Some(bytes) = self.table.get(token) else {
            return false;
        };
        let mut s = self.state;
        for &b in bytes {
            match self.grammar.step(s, b) {
                Some(next) => s = next,
                None => return false,
            }
        }
        true
    }

    fn allowed(&mut self) -> Arc<Allowed> {
        let key = self.state.key();
        if self.grammar.sam.is_none() {
            let key = JsonKey {
                state: key,
                max_chars: self.grammar.max_chars,
                max_ws: self.grammar.max_ws,
            };
            return self.table.json_mask(key, &self.grammar);
        }
        if let Some(allowed) = self.local.get(&key) {
            return allowed.clone();
        }
        let allowed = Arc::new(self.table.walk(&self.grammar, key));
        self.local.insert(key, allowed.clone());
        allowed
    }

    fn push_byte(&mut self, b: u8) -> Option<()> {
        let prev = self.state;
        let next = self.grammar.step(prev, b)?;
        let at = self.emitted.len();
        self.emitted.push(b);
        match (prev.phase, next.phase) {
            (Phase::Start, Phase::Open) => self.comma_at = None,
            (Phase::AfterStr, Phase::AfterComma) => self.comma_at = Some(at),
            (Phase::Open | Phase::AfterComma, Phase::Str) => {
                self.open_at = at;
                self.string_end = at + 1;
                self.content.clear();
                self.content_end = 0;
            }
            (Phase::Str, Phase::Str) => {
                match prev.utf8 {
                    Utf8::Escape => self.content.extend(unescape(b)),
                    Utf8::Boundary if b == b'\\' => {}
                    _ => self.content.push(b),
                }
                if next.utf8 == Utf8::Boundary {
                    self.string_end = self.emitted.len();
                    self.content_end = self.content.len();
                }
            }
            (Phase::Str, Phase::AfterStr) => {
                self.items
                    .push(String::from_utf8_lossy(&self.content).into_owned());
                self.content.clear();
                self.content_end = 0;
            }
            _ => {}
        }
        self.state = next;
        Some(())
    }

    fn refuse(&self, token: u32) -> Error {
        let tail_start = self.emitted.len().saturating_sub(24);
        Error::InvalidInput(format!(
            "token {token} is not allowed by the JSON-array constraint after `…{}`",
            String::from_utf8_lossy(&self.emitted[tail_start..])
        ))
    }
}

impl TokenConstraint for JsonArrayConstraint {
    fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        if self.ended {
            return Err(Error::InvalidInput(
                "the JSON-array constraint already ended: generation must stop at its end token"
                    .into(),
            ));
        }
        if self.state.phase == Phase::Done {
            let keep: Vec<(usize, f32)> = self
                .end_ids
                .iter()
                .filter_map(|&t| logits.get(t as usize).map(|&l| (t as usize, l)))
                .collect();
            if keep.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "the JSON array is closed but none of its end ids {:?} is in the vocabulary \
                     of {} logits",
                    self.end_ids,
                    logits.len()
                )));
            }
            logits.fill(f32::NEG_INFINITY);
            for (t, l) in keep {
                logits[t] = l;
            }
            return Ok(());
        }
        let chars_left = if self.state.phase == Phase::Str {
            self.grammar.max_chars - self.state.chars
        } else {
            self.grammar.max_chars
        };
        let items_left = self.state.items_left;
        match &*self.allowed() {
            Allowed::Dense(reqs) => {
                for (l, &r) in logits.iter_mut().zip(reqs.iter()) {
                    if !Allowed::fits(r, chars_left, items_left) {
                        *l = f32::NEG_INFINITY;
                    }
                }
                if logits.len() > reqs.len() {
                    logits[reqs.len()..].fill(f32::NEG_INFINITY);
                }
            }
            Allowed::Sparse(list) => {
                let keep: Vec<(usize, f32)> = list
                    .iter()
                    .filter(|&&(_, r)| Allowed::fits(r, chars_left, items_left))
                    .filter_map(|&(t, _)| logits.get(t as usize).map(|&l| (t as usize, l)))
                    .collect();
                logits.fill(f32::NEG_INFINITY);
                for (t, l) in keep {
                    logits[t] = l;
                }
            }
        }
        for &t in &self.end_ids {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn advance(&mut self, token: u32) -> Result<()> {
        if !self.allows(token) {
            return Err(self.refuse(token));
        }
        if self.end_ids.contains(&token) {
            self.ended = true;
            return Ok(());
        }
        let unlimited = self.state.items_left == UNLIMITED;
        let table = self.table.clone();
        for &b in table.get(token).unwrap_or_default() {
            self.push_byte(b).ok_or_else(|| self.refuse(token))?;
        }
        if unlimited {
            self.state.items_left = UNLIMITED;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<TokenBytes>();
        send_sync::<JsonArrayConstraint>();
    }

    #[test]
    fn suffix_automaton_accepts_exactly_the_substrings() {
        let text = "파스형 파스 abcab".as_bytes();
        let sam = Sam::new(text);
        let accepts = |s: &[u8]| {
            let mut st = 0;
            s.iter().all(|&b| match sam.next(st, b) {
                Some(n) => {
                    st = n;
                    true
                }
                None => false,
            })
        };
        for i in 0..text.len() {
            for j in i..=text.len() {
                assert!(accepts(&text[i..j]), "{:?}", &text[i..j]);
            }
        }
        for s in [&b"abb"[..], b"ca", b"ba ", "스파".as_bytes(), b"x"] {
            let is_sub = text.windows(s.len()).any(|w| w == s);
            assert_eq!(accepts(s), is_sub, "{s:?}");
        }
    }

    #[test]
    fn trie_walk_equals_token_by_token_check() {
        let pieces: Vec<Option<Vec<u8>>> = [
            "[", "\"", "]", ",", "\"]", "\",", "[\"", "a", "ab", "abc", "b", " ", "  ", "\n", "\\",
            "\\n", "n", "é", "한", "\"]x", "\",\"",
        ]
        .iter()
        .map(|s| Some(s.as_bytes().to_vec()))
        .chain([None, Some(vec![0xED]), Some(vec![0x95]), Some(vec![0x9C])])
        .collect();
        let table = Arc::new(TokenBytes::from_pieces(pieces));
        let mut lcg = 12345u64;
        for walk in 0..200 {
            let mode = if walk % 2 == 0 {
                OutputMode::Json
            } else {
                OutputMode::Extractive {
                    source: "abc 한 n\n".into(),
                }
            };
            let mut c = JsonArrayConstraint::new(table.clone(), mode, &[21])
                .max_item_chars(1 + walk % 4)
                .max_items(walk % 5);
            for _ in 0..30 {
                let mut logits = vec![0.0; 26];
                c.mask(&mut logits).unwrap();
                let allowed: Vec<u32> = (0..26u32).filter(|&t| logits[t as usize] == 0.0).collect();
                for t in 0..26u32 {
                    assert_eq!(allowed.contains(&t), c.allows(t), "id {t} after {c:?}");
                }
                assert!(!allowed.is_empty(), "dead end after {c:?}");
                lcg = lcg
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let t = allowed[(lcg >> 33) as usize % allowed.len()];
                c.advance(t).unwrap();
                let parsed: Vec<String> = serde_json::from_str(&c.json()).unwrap();
                assert_eq!(parsed, c.strings());
                if c.ended {
                    break;
                }
            }
        }
    }
}
