//! The heuristic filters, each exactly as its anchor decides: datatrove 0.10's
//! `GopherQualityFilter`, `GopherRepetitionFilter`, `C4QualityFilter`, `C4ParagraphFilter`
//! and `FineWebQualityFilter` (Gopher: Rae et al. 2021, table A1; C4: Raffel et al. 2020;
//! FineWeb: Penedo et al. 2024). Same checks in the same order, same thresholds and
//! defaults, words and sentences by spaCy's English rules (`text::spacy`), lengths in code
//! points and whitespace as Python has them (`text::pystr`); `tests/datatrove.rs` compares
//! every decision with datatrove's on real crawl.
//!
//! Where datatrove raises (a ratio over zero words with its guards turned off) these keep
//! going with the ratio taken as 0. Not a step: `steps::filters` runs them over shards.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::text::pystr;
use crate::text::spacy;

/// A removal: the rule (datatrove's reason string, snake_case), the measured value and the
/// threshold it crossed.
#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    pub rule: String,
    pub value: f64,
    pub threshold: f64,
    /// What else the ledger's detail should say (the language ID's top language).
    pub note: Option<String>,
}

/// Everything a filter measured on one document, in check order: (rule, value). A document
/// removed by a rule has no measurements of the rules after it.
pub type Measured = Vec<(String, f64)>;

/// A document's text and, once asked for, its spaCy words (byte ranges of the text).
#[derive(Debug)]
pub struct Doc<'t> {
    pub text: std::borrow::Cow<'t, str>,
    words: Option<Vec<(usize, usize)>>,
}

impl<'t> Doc<'t> {
    pub fn new(text: &'t str) -> Doc<'t> {
        Doc { text: text.into(), words: None }
    }

    /// The text and datatrove's `split_into_words(text)`.
    pub fn words(&mut self) -> (&str, Vec<&str>) {
        if self.words.is_none() {
            let mut toks = Vec::with_capacity(self.text.len() / 5 + 1);
            spacy::english().tokenize(&self.text, &mut toks);
            let text = &self.text;
            self.words = Some(
                toks.iter()
                    .filter(|t| !pystr::strip(&text[t.start..t.end]).is_empty())
                    .map(|t| (t.start, t.end))
                    .collect(),
            );
        }
        let text: &str = &self.text;
        (text, self.words.as_deref().unwrap_or_default().iter().map(|&(a, b)| &text[a..b]).collect())
    }

    /// Replaces the text (a line filter's rewrite); the words are recounted when next asked.
    pub fn set_text(&mut self, text: String) {
        self.text = text.into();
        self.words = None;
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Records `value` under `rule` and says whether it crosses: `over` = removed when above
/// the threshold, else when below. A threshold of 0 turns the rule off (datatrove's falsy).
fn check(seen: &mut Measured, rule: &str, value: f64, threshold: f64, over: bool) -> Option<Removal> {
    if threshold == 0.0 {
        return None;
    }
    seen.push((rule.to_string(), value));
    let out = if over { value > threshold } else { value < threshold };
    out.then(|| Removal { rule: rule.to_string(), value, threshold, note: None })
}

use super::punctuation::{PUNCTUATION_SET, TERMINAL_PUNCTUATION};

fn in_sorted(set: &[u32], c: char) -> bool {
    set.binary_search(&(c as u32)).is_ok()
}

/// `[filters.language]`: fastText language identification (`lid.176.bin` or `.ftz`, or any
/// fastText classifier with `__label__xx` labels), as datatrove's `LanguageFilter`: the text
/// with newlines as spaces, every label's probability; kept when one of `languages` (any
/// language when empty) scores above `threshold`. Kept documents get `language` and
/// `language_score` columns (the most likely label and its probability).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Language {
    /// The model file (a path or URI); the recipe names it, grist never downloads one.
    pub model: String,
    /// Language codes to keep (`en`, `de`, ...: the labels without `__label__`); empty: any.
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default = "default_language_threshold")]
    pub threshold: f64,
}

fn default_language_threshold() -> f64 {
    0.65
}

/// A document's most likely language and its probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Identified {
    pub language: String,
    pub score: f64,
}

impl Language {
    /// Checks with `model` (loaded from `self.model`); the identified language is returned
    /// whatever the verdict.
    pub fn check(
        &self,
        model: &crate::text::fasttext::Model,
        doc: &mut Doc,
        seen: &mut Measured,
    ) -> (Option<Identified>, Option<Removal>) {
        let text = doc.text.replace('\n', " ");
        let preds = model.predict(&text, 0);
        let lang = |l: &str| l.strip_prefix("__label__").unwrap_or(l).to_string();
        let top = preds.first().map(|(l, p)| Identified { language: lang(l), score: *p as f64 });
        // The score that decides: the best of the wanted languages (or of all).
        let value = preds
            .iter()
            .filter(|(l, _)| self.languages.is_empty() || self.languages.iter().any(|w| *w == lang(l)))
            .map(|(_, p)| *p as f64)
            .fold(0.0, f64::max);
        seen.push(("below_threshold".into(), value));
        let removal = (value <= self.threshold).then(|| Removal {
            rule: "below_threshold".into(),
            value,
            threshold: self.threshold,
            note: top.as_ref().map(|t| format!("most likely {} {:.4}", t.language, t.score)),
        });
        (top, removal)
    }
}

/// `[filters.gopher_quality]`: Gopher's quality rules. 0 turns a rule off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GopherQuality {
    pub min_doc_words: usize,
    pub max_doc_words: usize,
    pub min_avg_word_length: f64,
    pub max_avg_word_length: f64,
    /// Both `#` per word and ellipses per word.
    pub max_symbol_word_ratio: f64,
    pub max_bullet_lines_ratio: f64,
    pub max_ellipsis_lines_ratio: f64,
    /// The least fraction of words holding a letter (datatrove's name kept).
    pub max_non_alpha_words_ratio: f64,
    pub min_stop_words: usize,
    /// Distinct words of this list a document must hold (case-sensitive).
    pub stop_words: Vec<String>,
}

impl Default for GopherQuality {
    fn default() -> Self {
        GopherQuality {
            min_doc_words: 50,
            max_doc_words: 100_000,
            min_avg_word_length: 3.0,
            max_avg_word_length: 10.0,
            max_symbol_word_ratio: 0.1,
            max_bullet_lines_ratio: 0.9,
            max_ellipsis_lines_ratio: 0.3,
            max_non_alpha_words_ratio: 0.8,
            min_stop_words: 2,
            stop_words: ["the", "be", "to", "of", "and", "that", "have", "with"].map(String::from).to_vec(),
        }
    }
}

impl GopherQuality {
    pub fn check(&self, doc: &mut Doc, seen: &mut Measured) -> Option<Removal> {
        let (text, words) = doc.words();
        let n_words = words.len();
        let non_symbol: Vec<&str> =
            words.iter().copied().filter(|w| w.chars().any(|c| !in_sorted(PUNCTUATION_SET, c))).collect();
        let n = non_symbol.len();
        let n_f = n as f64;
        if let Some(r) = check(seen, "gopher_short_doc", n_f, self.min_doc_words as f64, false) {
            return Some(r);
        }
        if let Some(r) = check(seen, "gopher_long_doc", n_f, self.max_doc_words as f64, true) {
            return Some(r);
        }
        // numpy's mean of integer lengths: the sum is exact, so sum / n is numpy's value.
        let avg = if n == 0 { f64::NAN } else { non_symbol.iter().map(|w| pystr::len(w)).sum::<usize>() as f64 / n_f };
        if !avg.is_nan() {
            if let Some(r) = check(seen, "gopher_below_avg_threshold", avg, self.min_avg_word_length, false) {
                return Some(r);
            }
            if let Some(r) = check(seen, "gopher_above_avg_threshold", avg, self.max_avg_word_length, true) {
                return Some(r);
            }
        }
        let hashes = ratio(pystr::count(text, "#"), n_words);
        if let Some(r) = check(seen, "gopher_too_many_hashes", hashes, self.max_symbol_word_ratio, true) {
            return Some(r);
        }
        let ellipses = ratio(pystr::count(text, "...") + pystr::count(text, "…"), n_words);
        if let Some(r) = check(seen, "gopher_too_many_ellipsis", ellipses, self.max_symbol_word_ratio, true) {
            return Some(r);
        }
        let lines = pystr::splitlines(text);
        let bullets = lines
            .iter()
            .filter(|l| {
                let l = pystr::lstrip(l);
                l.starts_with('•') || l.starts_with('-')
            })
            .count();
        if let Some(r) =
            check(seen, "gopher_too_many_bullets", ratio(bullets, lines.len()), self.max_bullet_lines_ratio, true)
        {
            return Some(r);
        }
        let end_ellipsis = lines
            .iter()
            .filter(|l| {
                let l = pystr::rstrip(l);
                l.ends_with("...") || l.ends_with('…')
            })
            .count();
        let v = ratio(end_ellipsis, lines.len());
        if let Some(r) = check(seen, "gopher_too_many_end_ellipsis", v, self.max_ellipsis_lines_ratio, true) {
            return Some(r);
        }
        let alpha = ratio(words.iter().filter(|w| w.chars().any(pystr::is_alpha)).count(), n_words);
        if let Some(r) = check(seen, "gopher_below_alpha_threshold", alpha, self.max_non_alpha_words_ratio, false) {
            return Some(r);
        }
        let present: HashSet<&str> = words.iter().copied().filter(|w| self.stop_words.iter().any(|s| s == w)).collect();
        check(seen, "gopher_enough_stop_words", present.len() as f64, self.min_stop_words as f64, false)
    }
}

/// `[filters.gopher_repetition]`: Gopher's repetition rules. 0 turns a rule off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GopherRepetition {
    pub dup_line_frac: f64,
    pub dup_para_frac: f64,
    pub dup_line_char_frac: f64,
    pub dup_para_char_frac: f64,
    /// (n, most frequent n-gram's characters / document characters) limits.
    pub top_n_grams: Vec<(usize, f64)>,
    /// (n, characters in repeated n-grams / document characters) limits.
    pub dup_n_grams: Vec<(usize, f64)>,
}

impl Default for GopherRepetition {
    fn default() -> Self {
        GopherRepetition {
            dup_line_frac: 0.3,
            dup_para_frac: 0.3,
            dup_line_char_frac: 0.2,
            dup_para_char_frac: 0.2,
            top_n_grams: vec![(2, 0.2), (3, 0.18), (4, 0.16)],
            dup_n_grams: vec![(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)],
        }
    }
}

/// (duplicate elements, their characters): every occurrence after the first counts.
fn find_duplicates<'a>(x: impl Iterator<Item = &'a str>) -> (usize, usize) {
    let mut unique: HashSet<Key, KeyBuild> = HashSet::default();
    let (mut elems, mut chars) = (0, 0);
    for e in x {
        if !unique.insert(key(e)) {
            elems += 1;
            chars += pystr::len(e);
        }
    }
    (elems, chars)
}

/// Python's `re.split(sep + "{min,}", s)` for a one-byte separator.
fn split_runs(s: &str, sep: u8, min: usize) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == sep {
            let j = i + b[i..].iter().take_while(|&&c| c == sep).count();
            if j - i >= min {
                out.push(&s[start..i]);
                start = j;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// A string keyed by a precomputed hash (mixed for the table), compared by its bytes.
#[derive(Clone, Copy)]
struct Key<'a> {
    hash: u64,
    bytes: &'a [u8],
}

impl Hash for Key<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.bytes == other.bytes
    }
}
impl Eq for Key<'_> {}

/// Passes a [`Key`]'s hash through, spread over all 64 bits.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64(bytes);
    }
    fn write_u64(&mut self, h: u64) {
        self.0 = h.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
}

type KeyBuild = std::hash::BuildHasherDefault<KeyHasher>;

fn key(s: &str) -> Key<'_> {
    Key { hash: xxhash_rust::xxh3::xxh3_64(s.as_bytes()), bytes: s.as_bytes() }
}

/// Word n-grams as substrings of the words joined (with a separator or without, as datatrove
/// joins them), hashed in O(1) each by prefix hashes modulo the prime 2^61 - 1.
struct Grams {
    joined: Vec<u8>,
    /// Byte range of word i in `joined`.
    spans: Vec<(usize, usize)>,
    prefix: Vec<u64>,
    pow: Vec<u64>,
}

const MERSENNE: u64 = (1 << 61) - 1;
const BASE: u64 = 0x1d8e_4e27_c47d_124f % MERSENNE;

fn mulmod(a: u64, b: u64) -> u64 {
    let p = a as u128 * b as u128;
    let r = ((p >> 61) as u64) + ((p as u64) & MERSENNE);
    if r >= MERSENNE { r - MERSENNE } else { r }
}

impl Grams {
    fn new(words: &[&str], sep: Option<u8>) -> Grams {
        let mut joined = Vec::with_capacity(words.iter().map(|w| w.len() + 1).sum());
        let mut spans = Vec::with_capacity(words.len());
        for (i, w) in words.iter().enumerate() {
            if i > 0
                && let Some(c) = sep
            {
                joined.push(c);
            }
            spans.push((joined.len(), joined.len() + w.len()));
            joined.extend_from_slice(w.as_bytes());
        }
        let mut prefix = Vec::with_capacity(joined.len() + 1);
        let mut pow = Vec::with_capacity(joined.len() + 1);
        let (mut h, mut p) = (0u64, 1u64);
        prefix.push(0);
        pow.push(1);
        for &b in &joined {
            h = mulmod(h, BASE) + b as u64 + 1;
            h = if h >= MERSENNE { h - MERSENNE } else { h };
            p = mulmod(p, BASE);
            prefix.push(h);
            pow.push(p);
        }
        Grams { joined, spans, prefix, pow }
    }

    /// Words i..i+n.
    fn gram(&self, i: usize, n: usize) -> Key<'_> {
        let (a, b) = (self.spans[i].0, self.spans[i + n - 1].1);
        let sub = mulmod(self.prefix[a], self.pow[b - a]);
        let h = if self.prefix[b] >= sub { self.prefix[b] - sub } else { self.prefix[b] + MERSENNE - sub };
        Key { hash: h, bytes: &self.joined[a..b] }
    }
}

impl GopherRepetition {
    pub fn check(&self, doc: &mut Doc, seen: &mut Measured) -> Option<Removal> {
        let text_len = pystr::len(&doc.text);
        if doc.text.is_empty() {
            seen.push(("empty".into(), 0.0));
            return Some(Removal { rule: "empty".into(), value: 0.0, threshold: 0.0, note: None });
        }
        {
            let text: &str = &doc.text;
            let paragraphs = split_runs(pystr::strip(text), b'\n', 2);
            let (d, c) = find_duplicates(paragraphs.iter().copied());
            if let Some(r) = check(seen, "dup_para_frac", ratio(d, paragraphs.len()), self.dup_para_frac, true) {
                return Some(r);
            }
            if let Some(r) = check(seen, "dup_para_char_frac", ratio(c, text_len), self.dup_para_char_frac, true) {
                return Some(r);
            }
            let lines = split_runs(text, b'\n', 1);
            let (d, c) = find_duplicates(lines.iter().copied());
            if let Some(r) = check(seen, "dup_line_frac", ratio(d, lines.len()), self.dup_line_frac, true) {
                return Some(r);
            }
            if let Some(r) = check(seen, "dup_line_char_frac", ratio(c, text_len), self.dup_line_char_frac, true) {
                return Some(r);
            }
        }
        let (_, words) = doc.words();
        // Prefix sums of the words' lengths (code points).
        let mut cum = Vec::with_capacity(words.len() + 1);
        cum.push(0usize);
        for w in &words {
            cum.push(cum[cum.len() - 1] + pystr::len(w));
        }
        let spaced = Grams::new(&words, Some(b' '));
        for &(n, frac) in &self.top_n_grams {
            if n == 0 || words.len() < n {
                continue;
            }
            // Counter.most_common(1): the highest count, the earliest first occurrence on ties.
            let mut counts: HashMap<Key, (usize, usize), KeyBuild> = HashMap::default();
            for i in 0..=words.len() - n {
                counts.entry(spaced.gram(i, n)).or_insert((0, i)).0 += 1;
            }
            let (count, at) =
                counts.values().copied().max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1))).unwrap_or((0, 0));
            let chars = cum[at + n] - cum[at] + (n - 1);
            let rule = format!("top_{n}_gram");
            if let Some(r) = check(seen, &rule, ratio(chars * count, text_len), frac, true) {
                return Some(r);
            }
        }
        let glued = Grams::new(&words, None);
        for &(n, frac) in &self.dup_n_grams {
            let mut repeated = 0;
            if n > 0 {
                let mut unique: HashSet<Key, KeyBuild> = HashSet::default();
                let mut i = 0;
                while i + n <= words.len() {
                    if unique.insert(glued.gram(i, n)) {
                        i += 1;
                    } else {
                        repeated += cum[i + n] - cum[i];
                        i += n;
                    }
                }
            }
            let rule = format!("duplicated_{n}_n_grams");
            if let Some(r) = check(seen, &rule, ratio(repeated, text_len), frac, true) {
                return Some(r);
            }
        }
        None
    }
}

/// `[filters.c4]`: C4's line rules, which rewrite the text (kept lines, citations removed),
/// and its document rules. `min_num_sentences = -1` and `min_words_per_line = -1` and
/// `max_word_length = -1` turn those rules off, as in datatrove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C4Quality {
    pub remove_citations: bool,
    /// Drop lines not ending in `. ? ! " '` (or ending in `...`); FineWeb turns it off.
    pub filter_no_terminal_punct: bool,
    pub min_num_sentences: i64,
    pub min_words_per_line: i64,
    pub max_word_length: i64,
    pub filter_lorem_ipsum: bool,
    pub filter_javascript: bool,
    pub filter_curly_bracket: bool,
    pub filter_policy: bool,
}

impl Default for C4Quality {
    fn default() -> Self {
        C4Quality {
            remove_citations: true,
            filter_no_terminal_punct: true,
            min_num_sentences: 5,
            min_words_per_line: 3,
            max_word_length: 1000,
            filter_lorem_ipsum: true,
            filter_javascript: true,
            filter_curly_bracket: true,
            filter_policy: true,
        }
    }
}

/// Lines a line filter removed from one document, by rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinesRemoved {
    pub too_long_word: u32,
    pub no_terminal_punct: u32,
    pub too_few_words: u32,
    pub javascript: u32,
    pub policy: u32,
    /// The removed lines themselves (when asked for).
    pub lines: Vec<String>,
}

impl LinesRemoved {
    pub fn total(&self) -> u32 {
        self.too_long_word + self.no_terminal_punct + self.too_few_words + self.javascript + self.policy
    }
}

const POLICY_SUBSTRINGS: [&str; 6] =
    ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"];

fn citation() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"\[\d*\]|\[edit\]|\[citation needed\]").expect("constant regex"))
}

impl C4Quality {
    /// Checks and, when the document is kept, rewrites its text to the kept lines.
    pub fn check(
        &self,
        doc: &mut Doc,
        seen: &mut Measured,
        removed: &mut LinesRemoved,
        keep_lines: bool,
    ) -> Option<Removal> {
        let en = spacy::english();
        let mut sentences = 0i64;
        let mut kept: Vec<std::borrow::Cow<str>> = Vec::new();
        let drop = |removed: &mut LinesRemoved, line: &str, what: fn(&mut LinesRemoved) -> &mut u32| {
            *what(removed) += 1;
            if keep_lines {
                removed.lines.push(line.to_string());
            }
        };
        for raw in pystr::splitlines(&doc.text) {
            let line = pystr::strip(raw);
            let n_words = pystr::split(line).count() as i64;
            if self.max_word_length != -1 && pystr::split(line).any(|w| pystr::len(w) as i64 > self.max_word_length) {
                drop(removed, line, |r| &mut r.too_long_word);
                continue;
            }
            let line = if self.remove_citations { citation().replace_all(line, "") } else { line.into() };
            if self.filter_no_terminal_punct && (!(line.ends_with(['.', '?', '!', '"', '\''])) || line.ends_with("..."))
            {
                drop(removed, &line, |r| &mut r.no_terminal_punct);
                continue;
            }
            if n_words < self.min_words_per_line {
                drop(removed, &line, |r| &mut r.too_few_words);
                continue;
            }
            let lower = line.to_lowercase();
            if self.filter_lorem_ipsum && lower.contains("lorem ipsum") {
                seen.push(("lorem_ipsum".into(), 1.0));
                return Some(Removal { rule: "lorem_ipsum".into(), value: 1.0, threshold: 0.0, note: None });
            }
            if self.filter_javascript && lower.contains("javascript") {
                drop(removed, &line, |r| &mut r.javascript);
                continue;
            }
            if self.filter_curly_bracket && line.contains('{') {
                seen.push(("curly_bracket".into(), 1.0));
                return Some(Removal { rule: "curly_bracket".into(), value: 1.0, threshold: 0.0, note: None });
            }
            if self.filter_policy && POLICY_SUBSTRINGS.iter().any(|p| lower.contains(p)) {
                drop(removed, &line, |r| &mut r.policy);
                continue;
            }
            if self.min_num_sentences != -1 {
                sentences += en.sentence_count(&line) as i64;
            }
            kept.push(line);
        }
        seen.push(("too_few_sentences".into(), sentences as f64));
        if sentences < self.min_num_sentences {
            return Some(Removal {
                rule: "too_few_sentences".into(),
                value: sentences as f64,
                threshold: self.min_num_sentences as f64,
                note: None,
            });
        }
        let joined = kept.join("\n");
        let new = pystr::strip(&joined);
        if new != doc.text {
            let new = new.to_string();
            doc.set_text(new);
        }
        None
    }
}

/// `[filters.c4_paragraph]`: mC4's paragraph rule: the three longest `\n` lines all reach
/// 200 characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C4Paragraph {
    pub min_paragraphs: usize,
    pub min_paragraph_len: usize,
}

impl Default for C4Paragraph {
    fn default() -> Self {
        C4Paragraph { min_paragraphs: 3, min_paragraph_len: 200 }
    }
}

impl C4Paragraph {
    pub fn check(&self, doc: &mut Doc, seen: &mut Measured) -> Option<Removal> {
        let mut lens: Vec<usize> = doc.text.split('\n').map(pystr::len).collect();
        lens.sort_unstable_by(|a, b| b.cmp(a));
        // The shortest of the longest `min_paragraphs` lines (0 when there are fewer lines).
        let value = if lens.len() < self.min_paragraphs.max(1) { 0 } else { lens[self.min_paragraphs.max(1) - 1] };
        seen.push(("too_few_paragraphs".into(), value as f64));
        (lens.len() < self.min_paragraphs || value < self.min_paragraph_len).then(|| Removal {
            rule: "too_few_paragraphs".into(),
            value: value as f64,
            threshold: self.min_paragraph_len as f64,
            note: None,
        })
    }
}

/// `[filters.fineweb]`: FineWeb's quality rules. 0 turns a rule off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FineWebQuality {
    pub line_punct_thr: f64,
    pub line_punct_exclude_zero: bool,
    /// Line-end characters (default: datatrove's `TERMINAL_PUNCTUATION`, 159 characters).
    pub stop_chars: Option<Vec<String>>,
    pub short_line_thr: f64,
    /// Characters (code points) at or under which a line is short.
    pub short_line_length: usize,
    pub char_duplicates_ratio: f64,
    pub new_line_ratio: f64,
}

impl Default for FineWebQuality {
    fn default() -> Self {
        FineWebQuality {
            line_punct_thr: 0.12,
            line_punct_exclude_zero: false,
            stop_chars: None,
            short_line_thr: 0.67,
            short_line_length: 30,
            char_duplicates_ratio: 0.01,
            new_line_ratio: 0.3,
        }
    }
}

impl FineWebQuality {
    pub fn check(&self, doc: &mut Doc, seen: &mut Measured) -> Option<Removal> {
        let ends = |l: &str| match &self.stop_chars {
            None => l.chars().next_back().is_some_and(|c| in_sorted(TERMINAL_PUNCTUATION, c)),
            Some(s) => s.iter().any(|e| l.ends_with(e.as_str())),
        };
        {
            let text: &str = &doc.text;
            let lines: Vec<&str> = text.split('\n').filter(|l| !pystr::strip(l).is_empty()).collect();
            if lines.is_empty() {
                seen.push(("empty".into(), 0.0));
                return Some(Removal { rule: "empty".into(), value: 0.0, threshold: 0.0, note: None });
            }
            let r = ratio(lines.iter().filter(|l| ends(l)).count(), lines.len());
            seen.push(("line_punct_ratio".into(), r));
            if self.line_punct_thr != 0.0 && r < self.line_punct_thr && !(r == 0.0 && self.line_punct_exclude_zero) {
                return Some(Removal {
                    rule: "line_punct_ratio".into(),
                    value: r,
                    threshold: self.line_punct_thr,
                    note: None,
                });
            }
            let r = ratio(lines.iter().filter(|l| pystr::len(l) <= self.short_line_length).count(), lines.len());
            if let Some(r) = check(seen, "short_line_ratio", r, self.short_line_thr, true) {
                return Some(r);
            }
            let (_, dup) = find_duplicates(lines.iter().copied());
            let r = ratio(dup, pystr::len(text) - pystr::count(text, "\n"));
            if let Some(r) = check(seen, "char_dup_ratio", r, self.char_duplicates_ratio, true) {
                return Some(r);
            }
        }
        let newlines = pystr::count(&doc.text, "\n");
        let r = ratio(newlines, doc.words().1.len());
        check(seen, "list_ratio", r, self.new_line_ratio, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(r: Option<Removal>) -> Option<String> {
        r.map(|r| r.rule)
    }

    const GOOD: &str = "The history of the printing press is one of the most important stories of the modern age. Before it, books were copied by hand, and that made them rare and expensive.\nWith movable type, a workshop could produce hundreds of copies of a text in the time that a scribe needed for one, and the price of books fell.\nIdeas travelled faster than ever before, and scholars in distant cities could read and answer each other within months rather than years.\nThe change was slow at first, but it reshaped religion, science and politics, and it has been compared with the arrival of the internet.\nHistorians still argue about how much of the modern world we owe to it, but few doubt that it was a turning point to be remembered.";

    /// datatrove 0.10.1's decisions on hand-made texts (`examples.py`, `edge.py` of the
    /// research notes; the values printed there).
    #[test]
    fn decisions_equal_datatroves_on_hand_made_texts() {
        let m = &mut Measured::new();
        let gq = |t: &str| rule(GopherQuality::default().check(&mut Doc::new(t), &mut Measured::new()));
        let gr = |t: &str| rule(GopherRepetition::default().check(&mut Doc::new(t), &mut Measured::new()));
        let fw = |t: &str| rule(FineWebQuality::default().check(&mut Doc::new(t), &mut Measured::new()));
        assert_eq!(gq(GOOD), None);
        assert_eq!(gr(GOOD), None);
        assert_eq!(fw(GOOD), None);
        let short = "Hello world. This is a tiny document.";
        assert_eq!(gq(short).as_deref(), Some("gopher_short_doc"));
        assert_eq!(gr(short).as_deref(), Some("top_2_gram"));
        assert_eq!(gr("").as_deref(), Some("empty"));
        assert_eq!(gr("   \n\n  "), None);
        assert_eq!(fw("   \n\n  ").as_deref(), Some("empty"));
        assert_eq!(gq(&"alpha beta gamma delta epsilon zeta ".repeat(10)).as_deref(), Some("gopher_enough_stop_words"));
        assert_eq!(gq(&"the and alpha beta gamma delta ".repeat(10)), None);
        assert_eq!(gq(&"The And alpha beta gamma delta ".repeat(10)).as_deref(), Some("gopher_enough_stop_words"));
        assert_eq!(
            gq(&format!("the and {}", "supercalifragilistic ".repeat(60))).as_deref(),
            Some("gopher_above_avg_threshold")
        );
        assert_eq!(
            gq(&"the and 12345 67890 11111 22222 33333 ".repeat(10)).as_deref(),
            Some("gopher_below_alpha_threshold")
        );
        let bullets = ["- the and of to be with that have cat dog"; 10].join("\r\n");
        assert_eq!(gq(&bullets).as_deref(), Some("gopher_too_many_bullets"));
        let mut lines: Vec<String> = (0..4).map(|i| format!("the and of line number {i} goes on and on ...")).collect();
        lines.extend((0..6).map(|i| format!("the and of line number {i} with some more words in it.")));
        assert_eq!(gq(&lines.join("\n")).as_deref(), Some("gopher_too_many_end_ellipsis"));
        // A repeated line: 6 + 6 copies around one unique line.
        let rep = [
            vec!["Buy cheap watches online now and save money today!"; 6],
            vec!["Unique."],
            vec!["Buy cheap watches online now and save money today!"; 6],
        ]
        .concat()
        .join("\n");
        assert_eq!(gr(&rep).as_deref(), Some("dup_line_frac"));
        assert_eq!(fw(&rep).as_deref(), Some("char_dup_ratio"));
        let one = "The cat sat on the mat and it was happy with that. ".repeat(10);
        assert_eq!(fw(&one).as_deref(), Some("line_punct_ratio"));
        assert_eq!(fw(one.trim_end()), None);
        // Measurements name the rule and its value.
        GopherQuality::default().check(&mut Doc::new(short), m);
        assert_eq!(m[0], ("gopher_short_doc".to_string(), 7.0));
    }

    #[test]
    fn c4_rewrites_lines_as_datatrove_does() {
        let text = "This is the first good sentence of the page. And a second one here!\nShort line.\nPlease enable JavaScript to view this page properly.\nThis site uses cookies to improve the experience.\nA line with a citation[1] and another[edit] ends here.\nNo terminal punctuation on this line at all\nEnds with an ellipsis which is not allowed...\n\"Quoted line ends with a quote mark here.\"\nThird sentence. Fourth sentence? Fifth sentence!";
        let mut doc = Doc::new(text);
        let mut removed = LinesRemoved::default();
        assert_eq!(C4Quality::default().check(&mut doc, &mut Measured::new(), &mut removed, true), None);
        assert_eq!(
            doc.text,
            "This is the first good sentence of the page. And a second one here!\nA line with a citation and another ends here.\n\"Quoted line ends with a quote mark here.\"\nThird sentence. Fourth sentence? Fifth sentence!"
        );
        assert_eq!(
            (removed.no_terminal_punct, removed.too_few_words, removed.javascript, removed.policy),
            (2, 1, 1, 1)
        );
        assert_eq!(removed.lines.len(), 5);
        let fineweb = C4Quality { filter_no_terminal_punct: false, ..C4Quality::default() };
        let mut doc = Doc::new(text);
        assert_eq!(fineweb.check(&mut doc, &mut Measured::new(), &mut LinesRemoved::default(), false), None);
        assert!(doc.text.contains("No terminal punctuation on this line at all\nEnds with an ellipsis"));
        let c4 = |t: &str| {
            rule(C4Quality::default().check(
                &mut Doc::new(t),
                &mut Measured::new(),
                &mut LinesRemoved::default(),
                false,
            ))
        };
        let five = "One sentence here. Two sentences here. Three are here. Four are here. Five are here.";
        assert_eq!(c4(&format!("Lorem ipsum dolor sit amet consectetur.\n{five}")).as_deref(), Some("lorem_ipsum"));
        assert_eq!(c4(&format!("{five}\nfunction f() {{ return 1; }} is code.")).as_deref(), Some("curly_bracket"));
        assert_eq!(c4(&format!("{five}\nfunction f() {{ return 1; }}")), None);
        assert_eq!(c4("Hello world. This is a tiny document.").as_deref(), Some("too_few_sentences"));
    }

    #[test]
    fn python_splits_and_joins() {
        assert_eq!(split_runs("\nA\n\nB\n", b'\n', 1), ["", "A", "B", ""]);
        assert_eq!(split_runs("A\n\nB\nC\n\n\nD", b'\n', 2), ["A", "B\nC", "D"]);
        // "".join: ("ab", "c") and ("a", "bc") are the same 2-gram; " ".join keeps them apart.
        let words = ["ab", "c", "a", "bc"];
        let glued = Grams::new(&words, None);
        assert!(glued.gram(0, 2) == glued.gram(2, 2));
        let spaced = Grams::new(&words, Some(b' '));
        assert!(spaced.gram(0, 2) != spaced.gram(2, 2));
        assert!(spaced.gram(0, 1) != spaced.gram(2, 1));
        let again = Grams::new(&["x", "ab", "c"], Some(b' '));
        assert!(again.gram(1, 2) == spaced.gram(0, 2));
        let mut h: HashSet<Key, KeyBuild> = HashSet::default();
        assert!(h.insert(glued.gram(0, 2)) && !h.insert(glued.gram(2, 2)));
        let p = C4Paragraph::default();
        let long = "x".repeat(200);
        assert_eq!(p.check(&mut Doc::new(&[long.as_str(); 3].join("\n")), &mut Measured::new()), None);
        assert!(
            p.check(&mut Doc::new(&[long.as_str(), long.as_str(), "short"].join("\n")), &mut Measured::new()).is_some()
        );
    }
}
