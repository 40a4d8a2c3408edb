//! A tolerant parser for keyword lists in unconstrained model output.
//!
//! Models asked for a JSON array of strings answer with code fences, trailing commas, single
//! quotes, a sentence before the list, bullet lists, or a list cut off by the token limit.
//! [`parse_keyword_list`] takes valid JSON first and then repairs, in this order: the first
//! fenced block (```` ```json … ``` ````) if any; the first `[` to its matching `]` (or to the end
//! when the list was cut off, reported in [`Parsed::truncated`]); items quoted with `"` or `'`
//! (escapes `\"`, `\'`, `\\`, `\n`, `\uXXXX`) or bare up to the next comma; trailing and doubled
//! commas ignored. Output without any `[` is read as a bullet or comma list. Items are trimmed;
//! empty ones and repeats are dropped (first occurrence kept).

/// What [`parse_keyword_list`] read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// The keywords, in order, each once.
    pub keywords: Vec<String>,
    /// Whether the output was valid JSON (an array of strings) as it stood, fences aside.
    pub strict_json: bool,
    /// Whether the list had no closing `]` or an unterminated string (output cut off).
    pub truncated: bool,
}

/// Reads a keyword list from model output; see the [module docs](self). Never fails: output
/// with no list in it gives no keywords.
pub fn parse_keyword_list(output: &str) -> Parsed {
    let body = fenced(output).unwrap_or(output).trim();
    if let Ok(items) = serde_json::from_str::<Vec<String>>(body) {
        return Parsed {
            keywords: dedup(items),
            strict_json: true,
            truncated: false,
        };
    }
    match body.find('[') {
        Some(open) => {
            let (items, truncated) = scan_array(&body[open + 1..]);
            Parsed {
                keywords: dedup(items),
                strict_json: false,
                truncated,
            }
        }
        None => Parsed {
            keywords: dedup(plain_list(body)),
            strict_json: false,
            truncated: false,
        },
    }
}

/// The inside of the first ``` fence, when there is one (an unclosed fence runs to the end).
fn fenced(text: &str) -> Option<&str> {
    let start = text.find("```")?;
    let after = &text[start + 3..];
    // Skip a language tag on the fence line.
    let body_start = after.find('\n').map_or(after.len(), |i| i + 1);
    let tag = after[..body_start].trim();
    let body = if tag.starts_with('[') {
        after
    } else {
        &after[body_start..]
    };
    Some(body.find("```").map_or(body, |end| &body[..end]))
}

/// Items of an array body (after its `[`), and whether it ended without `]`.
fn scan_array(body: &str) -> (Vec<String>, bool) {
    let mut items = Vec::new();
    let mut chars = body.chars().peekable();
    let mut bare = String::new();
    loop {
        let Some(c) = chars.next() else {
            push_bare(&mut items, &mut bare);
            return (items, true);
        };
        match c {
            ']' => {
                push_bare(&mut items, &mut bare);
                return (items, false);
            }
            ',' | '\n' => push_bare(&mut items, &mut bare),
            '"' | '\'' | '“' | '‘' if bare.trim().is_empty() => {
                let close = match c {
                    '“' => '”',
                    '‘' => '’',
                    q => q,
                };
                let mut s = String::new();
                let mut closed = false;
                while let Some(d) = chars.next() {
                    if d == close {
                        closed = true;
                        break;
                    }
                    if d == '\\' {
                        match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('u') => {
                                let hex: String = (0..4).filter_map(|_| chars.next()).collect();
                                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                                    Some(ch) => s.push(ch),
                                    None => s.push_str(&hex),
                                }
                            }
                            Some(other) => s.push(other),
                            None => break,
                        }
                    } else {
                        s.push(d);
                    }
                }
                items.push(s);
                bare.clear();
                if !closed {
                    return (items, true);
                }
            }
            c => bare.push(c),
        }
    }
}

fn push_bare(items: &mut Vec<String>, bare: &mut String) {
    let t = bare.trim();
    if !t.is_empty() {
        items.push(t.to_owned());
    }
    bare.clear();
}

/// A list without brackets: bullets (`-`, `*`, `•`, `1.`) or commas.
fn plain_list(body: &str) -> Vec<String> {
    body.lines()
        .flat_map(|line| line.split([',', '、']))
        .map(|item| {
            let item = item.trim();
            let item = item.trim_start_matches(['-', '*', '•']).trim_start();
            let digits = item.chars().take_while(char::is_ascii_digit).count();
            let item = if digits > 0 && item[digits..].starts_with(['.', ')']) {
                item[digits + 1..].trim_start()
            } else {
                item
            };
            item.trim_matches(['"', '\'']).trim().to_owned()
        })
        .collect()
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let item = item.trim().to_owned();
        if !item.is_empty() && !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(output: &str) -> Vec<String> {
        parse_keyword_list(output).keywords
    }

    #[test]
    fn valid_json_is_taken_as_is() {
        let p = parse_keyword_list(r#"["진통", "해열", "파스"]"#);
        assert_eq!(p.keywords, ["진통", "해열", "파스"]);
        assert!(p.strict_json && !p.truncated);
        assert_eq!(kw(r#"["a\"b", "\uD30C\uC2A4"]"#), ["a\"b", "파스"]);
    }

    #[test]
    fn fences_trailing_commas_and_single_quotes() {
        assert_eq!(kw("```json\n[\"진통\", \"해열\",]\n```"), ["진통", "해열"]);
        assert_eq!(kw("```\n['임산부', '노인']\n```\n설명"), ["임산부", "노인"]);
        assert_eq!(
            kw("키워드: [진통, 해열, , 파스,]"),
            ["진통", "해열", "파스"]
        );
        assert_eq!(kw("[“임산부”, ‘노인’]"), ["임산부", "노인"]);
        assert_eq!(kw(r#"["it's", 'say "hi"']"#), ["it's", "say \"hi\""]);
        let p = parse_keyword_list("```json\n[\"진통\"]\n```");
        assert!(p.strict_json);
    }

    #[test]
    fn cut_off_lists_keep_what_was_written() {
        let p = parse_keyword_list(r#"["진통", "해열", "파"#);
        assert_eq!(p.keywords, ["진통", "해열", "파"]);
        assert!(p.truncated);
        let p = parse_keyword_list(r#"["진통", 해열"#);
        assert_eq!(p.keywords, ["진통", "해열"]);
        assert!(p.truncated);
    }

    #[test]
    fn bullets_commas_repeats_and_nothing() {
        assert_eq!(
            kw("- 진통\n- 해열\n* 파스\n1. 임산부\n2) 노인"),
            ["진통", "해열", "파스", "임산부", "노인"]
        );
        assert_eq!(kw("진통, 해열, 진통"), ["진통", "해열"]);
        assert_eq!(kw(""), Vec::<String>::new());
        assert_eq!(kw("[]"), Vec::<String>::new());
        assert!(!parse_keyword_list("[]").truncated);
    }
}
