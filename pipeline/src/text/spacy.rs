//! spaCy's rule-based English tokenizer and sentencizer (`spacy.blank("en")` + `sentencizer`,
//! spaCy 3.8), ported token for token: datatrove (0.4 and later) counts English words and
//! sentences with them, so the Gopher, C4 and FineWeb filters decide by their counts.
//!
//! The algorithm is spaCy's `tokenizer.pyx`: split at Python whitespace (a run that is one
//! `' '` is dropped, other runs are tokens), then per chunk: special cases, prefixes and
//! suffixes peeled off in a loop, the URL pattern, infixes, and last the "special matcher"
//! pass that re-joins special cases split by affixes. The patterns, the 1,347 special cases
//! and the sentencizer's punctuation are spaCy's own data (MIT), dumped by
//! `scripts/spacy-dump.py` into `pipeline/data/spacy-en/`; the patterns are Python regexes
//! with look-behinds, run here by `fancy-regex`.
//!
//! Not spaCy: no vocabulary, lexeme attributes, lemmas or models; tokens are byte ranges of
//! the text.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use fancy_regex::Regex;

use crate::text::pystr;

const PATTERNS: &str = include_str!("../../data/spacy-en/patterns.json");
const SPECIAL_CASES: &str = include_str!("../../data/spacy-en/special_cases.json");
const SENTENCE_PUNCT: &str = include_str!("../../data/spacy-en/sentencizer_punct_chars.json");

/// One token: a byte range of the tokenized text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
}

/// A special case's tokens as the affix rules cut it: the token texts the matcher looks for.
type Pattern = Box<[Box<str>]>;

/// The English tokenizer and sentencizer, built once from the embedded data.
pub struct English {
    prefix: Rule,
    suffix: Suffix,
    infix: Rule,
    url: Rule,
    /// Special case -> the lengths (bytes) of its tokens.
    specials: HashMap<Box<str>, Box<[usize]>>,
    /// Special cases that affix splitting would cut, by their first token: the token texts.
    matcher: HashMap<Box<str>, Vec<Pattern>>,
    /// First bytes of the matcher's first tokens (a token starting otherwise cannot match).
    matcher_first: [bool; 256],
    sentence_punct: HashSet<Box<str>>,
    /// The longest special case, bytes.
    longest_special: usize,
}

impl std::fmt::Debug for English {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("English").field("specials", &self.specials.len()).field("matcher", &self.matcher.len()).finish()
    }
}

/// Chunks whose tokens a thread remembers before it starts over (about 100 bytes each).
const CACHE_ENTRIES: usize = 1 << 17;
/// Longer chunks are not remembered (they rarely repeat), which bounds the cache at about
/// 2^17 x (64 + overhead) bytes per thread.
const CACHE_CHUNK_BYTES: usize = 64;

thread_local! {
    /// Chunk -> its tokens' lengths (bytes), for chunks the affix rules cut.
    static CACHE: std::cell::RefCell<HashMap<Box<str>, Box<[usize]>>> = std::cell::RefCell::new(HashMap::new());
}

/// The tokenizer (compiled on first use).
pub fn english() -> &'static English {
    static EN: OnceLock<English> = OnceLock::new();
    EN.get_or_init(English::build)
}

/// Python `re` syntax to Rust's: inside a class Python takes `[`, `&&`, `--` and `~~`
/// literally, Rust as nesting and set operations.
fn rust_syntax(py: &str) -> String {
    let mut out = String::with_capacity(py.len() + 64);
    let mut in_class = false;
    let mut class_start = false;
    let mut chars = py.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(c);
            if let Some(n) = chars.next() {
                out.push(n);
            }
            class_start = false;
            continue;
        }
        if in_class {
            match c {
                ']' if !class_start => in_class = false,
                '[' | '&' | '~' => out.push('\\'),
                '-' if chars.peek() == Some(&'-') => {
                    out.push_str("\\-");
                    class_start = false;
                    continue;
                }
                _ => {}
            }
            class_start = c == '^' && class_start;
        } else if c == '[' {
            in_class = true;
            class_start = true;
            out.push(c);
            if chars.peek() == Some(&'^') {
                out.push('^');
                chars.next();
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Walks a Python pattern from byte `from`, calling `f(index, byte, depth)` for every byte
/// outside escapes and character classes (`depth`: groups open before it, a `)` counted after
/// the call) until `f` returns true; the index where it stopped, or the pattern's length.
fn walk(p: &str, from: usize, mut f: impl FnMut(usize, u8, i32) -> bool) -> usize {
    let b = p.as_bytes();
    let (mut depth, mut in_class, mut i) = (0i32, false, from);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !in_class => {
                in_class = true;
                // A `]` right after `[` or `[^` is a literal.
                if b.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b']' if in_class => in_class = false,
            c if !in_class => {
                if c == b'(' {
                    depth += 1;
                }
                if f(i, c, depth) {
                    return i;
                }
                if c == b')' {
                    depth -= 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// The top-level alternatives of a Python pattern (`a|b|(c|d)` -> `a`, `b`, `(c|d)`).
fn alternatives(p: &str) -> Vec<&str> {
    let mut cuts = vec![0];
    walk(p, 0, |i, c, depth| {
        if c == b'|' && depth == 0 {
            cuts.push(i + 1);
        }
        false
    });
    cuts.push(p.len() + 1);
    cuts.windows(2).map(|w| &p[w[0]..w[1] - 1]).collect()
}

/// The end (byte index past the `)`) of the group opening at `open`.
fn group_end(p: &str, open: usize) -> usize {
    (walk(p, open, |_, c, depth| c == b')' && depth == 1) + 1).min(p.len())
}

/// The pattern with its look-arounds removed: it matches wherever the pattern does (and
/// more), and runs on the regex crate's automata.
fn without_lookarounds(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        let rest = &p[i..];
        if ["(?<=", "(?<!", "(?=", "(?!"].iter().any(|l| rest.starts_with(l)) {
            i = group_end(p, i);
            continue;
        }
        let c = rest.chars().next().unwrap_or('\0');
        let n = if c == '\\' { 1 + rest[1..].chars().next().map_or(0, char::len_utf8) } else { c.len_utf8() };
        out.push_str(&rest[..n]);
        i += n;
    }
    out
}

fn has_lookaround(p: &str) -> bool {
    without_lookarounds(p).len() != p.len()
}

/// A Python pattern: on the regex crate when it has no look-arounds; else on `fancy-regex`,
/// run only where its look-around-free widening (on the regex crate) matches at all.
struct Rule {
    plain: regex::Regex,
    fancy: Option<Regex>,
}

impl Rule {
    fn new(py: &str) -> Rule {
        let plain = regex::Regex::new(&rust_syntax(&without_lookarounds(py))).expect("embedded spaCy pattern compiles");
        let fancy = has_lookaround(py).then(|| Regex::new(&rust_syntax(py)).expect("embedded spaCy pattern compiles"));
        Rule { plain, fancy }
    }

    /// The leftmost-first match, as Python's `search`.
    fn find(&self, s: &str) -> Option<(usize, usize)> {
        let m = self.plain.find(s)?;
        match &self.fancy {
            None => Some((m.start(), m.end())),
            Some(f) => f.find(s).ok().flatten().map(|m| (m.start(), m.end())),
        }
    }

    fn has_match(&self, s: &str) -> bool {
        self.find(s).is_some()
    }

    /// Python's `finditer`: non-overlapping matches, left to right.
    fn find_iter<'s>(&'s self, s: &'s str) -> Box<dyn Iterator<Item = (usize, usize)> + 's> {
        if !self.plain.is_match(s) {
            return Box::new(std::iter::empty());
        }
        match &self.fancy {
            None => Box::new(self.plain.find_iter(s).map(|m| (m.start(), m.end()))),
            Some(f) => Box::new(f.find_iter(s).flatten().map(|m| (m.start(), m.end()))),
        }
    }
}

/// The suffix pattern: alternatives all anchored at the end, so Python's `search` (the
/// leftmost start) finds the longest suffix any alternative matches, whichever it is. The
/// plain alternatives run as one automaton; one with a leading look-behind `(?<=C)Y` runs as
/// `C(Y)` (the leftmost such match gives its longest `Y` preceded by a `C`).
struct Suffix {
    plain: regex::Regex,
    /// `C(Y)` and the most bytes a match can span: only the string's tail that long is searched
    /// (a suffix ends at the end), so peeling a long chunk stays linear.
    behind: Vec<(regex::Regex, usize)>,
    /// Alternatives with other look-arounds (none in spaCy 3.8's English).
    fancy: Vec<Regex>,
}

impl Suffix {
    fn new(py: &str) -> Suffix {
        let (mut plain, mut behind, mut fancy) = (Vec::new(), Vec::new(), Vec::new());
        for alt in alternatives(py) {
            if !has_lookaround(alt) {
                plain.push(rust_syntax(alt));
            } else if alt.starts_with("(?<=") && !has_lookaround(&alt[group_end(alt, 0)..]) {
                let end = group_end(alt, 0);
                let (c, y) = (&alt[4..end - 1], &alt[end..]);
                let re = format!("(?:{})({})", rust_syntax(c), rust_syntax(y));
                let max = regex_syntax::Parser::new()
                    .parse(&re)
                    .ok()
                    .and_then(|h| h.properties().maximum_len())
                    .unwrap_or(usize::MAX);
                behind.push((regex::Regex::new(&re).expect("embedded spaCy pattern compiles"), max));
            } else {
                fancy.push(Regex::new(&rust_syntax(alt)).expect("embedded spaCy pattern compiles"));
            }
        }
        let plain = regex::Regex::new(&plain.join("|")).expect("embedded spaCy pattern compiles");
        Suffix { plain, behind, fancy }
    }

    /// The suffix's length in bytes (0: none).
    fn find(&self, s: &str) -> usize {
        let mut best = self.plain.find(s).map_or(0, |m| s.len() - m.start());
        for (re, max) in &self.behind {
            let mut from = s.len().saturating_sub(*max);
            while !s.is_char_boundary(from) {
                from -= 1;
            }
            if let Some(y) = re.captures(&s[from..]).and_then(|c| c.get(1)) {
                best = best.max(s.len() - from - y.start());
            }
        }
        for re in &self.fancy {
            if let Ok(Some(m)) = re.find(s) {
                best = best.max(s.len() - m.start());
            }
        }
        best
    }
}

impl English {
    fn build() -> English {
        #[derive(serde::Deserialize)]
        struct Patterns {
            prefix: String,
            suffix: String,
            infix: String,
            url_match: String,
        }
        // The embedded data is part of the binary: a failure here is a build defect, caught
        // by every test that tokenizes.
        let p: Patterns = serde_json::from_str(PATTERNS).expect("embedded spaCy patterns");
        let re = |s: &str| Rule::new(s);
        let cases: std::collections::BTreeMap<String, Vec<String>> =
            serde_json::from_str(SPECIAL_CASES).expect("embedded spaCy special cases");
        let punct: Vec<String> = serde_json::from_str(SENTENCE_PUNCT).expect("embedded sentencizer punctuation");
        let mut en = English {
            prefix: re(&p.prefix),
            suffix: Suffix::new(&p.suffix),
            infix: re(&p.infix),
            url: re(&p.url_match),
            specials: cases
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.iter().map(|t| t.len()).collect::<Vec<_>>().into()))
                .collect(),
            matcher: HashMap::new(),
            matcher_first: [false; 256],
            sentence_punct: punct.into_iter().map(Into::into).collect(),
            longest_special: cases.keys().map(String::len).max().unwrap_or(0),
        };
        // spaCy's `add_special_case` with `faster_heuristics`: a case goes to the matcher
        // when affix rules would cut it (or it holds a space); its pattern is its own
        // tokenization without special cases.
        let mut matcher: HashMap<Box<str>, Vec<Pattern>> = HashMap::new();
        let mut toks = Vec::new();
        for key in cases.keys() {
            let cut =
                en.find_prefix(key) > 0 || en.find_suffix(key) > 0 || en.infix.has_match(key) || key.contains(' ');
            if !cut {
                continue;
            }
            toks.clear();
            en.tokenize_affixes(key, false, &mut toks);
            let pattern: Pattern = toks.iter().map(|t| key[t.start..t.end].into()).collect();
            if let Some(first) = pattern.first() {
                en.matcher_first[first.as_bytes()[0] as usize] = true;
                matcher.entry(first.clone()).or_default().push(pattern);
            }
        }
        en.matcher = matcher;
        en
    }

    fn find_prefix(&self, s: &str) -> usize {
        self.prefix.find(s).map_or(0, |(a, b)| b - a)
    }

    fn find_suffix(&self, s: &str) -> usize {
        self.suffix.find(s)
    }

    /// Appends the tokens of `text` (whitespace tokens included, as spaCy's `Doc` has them).
    pub fn tokenize(&self, text: &str, out: &mut Vec<Token>) {
        let first = out.len();
        self.tokenize_affixes(text, true, out);
        self.apply_special_cases(text, out, first);
    }

    /// The words datatrove counts (`split_into_words`): the tokens, whitespace ones dropped.
    pub fn words<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut toks = Vec::with_capacity(text.len() / 5 + 1);
        self.tokenize(text, &mut toks);
        toks.iter().map(|t| &text[t.start..t.end]).filter(|w| !pystr::strip(w).is_empty()).collect()
    }

    /// datatrove's `len(split_into_sentences(text))`: spaCy's sentencizer over the tokens,
    /// at least 1.
    pub fn sentence_count(&self, text: &str) -> usize {
        let mut toks = Vec::new();
        self.tokenize(text, &mut toks);
        let mut sentences = usize::from(!toks.is_empty());
        let mut seen_period = false;
        for t in &toks {
            let s = &text[t.start..t.end];
            let in_punct = self.sentence_punct.contains(s);
            if seen_period && !in_punct && !s.chars().all(pystr::is_punct) {
                sentences += 1;
                seen_period = false;
            } else if in_punct {
                seen_period = true;
            }
        }
        sentences.max(1)
    }

    /// `Tokenizer._tokenize_affixes`: whitespace chunking, then each chunk.
    fn tokenize_affixes(&self, text: &str, specials: bool, out: &mut Vec<Token>) {
        let Some(c0) = text.chars().next() else { return };
        let mut in_ws = pystr::is_space(c0);
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if pystr::is_space(c) != in_ws {
                if start < i {
                    self.chunk(text, start, i, specials, out);
                }
                start = if c == ' ' { i + 1 } else { i };
                in_ws = !in_ws;
            }
        }
        if start < text.len() {
            self.chunk(text, start, text.len(), specials, out);
        }
    }

    fn special(&self, s: &str, specials: bool) -> Option<&[usize]> {
        // Longer than every case: no lookup (hashing a long chunk at every affix peeled would
        // make a chunk of a million `)` quadratic).
        if !specials || s.len() > self.longest_special {
            return None;
        }
        self.specials.get(s).map(|v| &v[..])
    }

    fn push_special(at: usize, lens: &[usize], out: &mut Vec<Token>) {
        let mut p = at;
        for &l in lens {
            out.push(Token { start: p, end: p + l });
            p += l;
        }
    }

    /// One chunk `text[lo..hi]`: `_split_affixes` then `_attach_tokens`.
    fn chunk(&self, text: &str, lo: usize, hi: usize, specials: bool, out: &mut Vec<Token>) {
        let s = &text[lo..hi];
        if let Some(lens) = self.special(s, specials) {
            Self::push_special(lo, lens, out);
            return;
        }
        // Letters only: no prefix, suffix, infix or URL rule matches (tested below).
        if s.bytes().all(|b| b.is_ascii_alphabetic()) {
            out.push(Token { start: lo, end: hi });
            return;
        }
        if specials && s.len() <= CACHE_CHUNK_BYTES {
            // A chunk's tokens depend on the chunk alone (spaCy caches them the same way):
            // crawl text repeats its punctuated words, and the rules cost microseconds each.
            let hit = CACHE.with(|c| {
                let c = c.borrow();
                let lens = c.get(s)?;
                Self::push_special(lo, lens, out);
                Some(())
            });
            if hit.is_some() {
                return;
            }
            let first = out.len();
            self.split_and_attach(text, lo, hi, specials, out);
            let lens: Box<[usize]> = out[first..].iter().map(|t| t.end - t.start).collect();
            CACHE.with(|c| {
                let mut c = c.borrow_mut();
                if c.len() >= CACHE_ENTRIES {
                    c.clear();
                }
                c.insert(s.into(), lens);
            });
            return;
        }
        self.split_and_attach(text, lo, hi, specials, out);
    }

    /// `_split_affixes` then `_attach_tokens` for the chunk `text[lo..hi]`.
    fn split_and_attach(&self, text: &str, lo: usize, hi: usize, specials: bool, out: &mut Vec<Token>) {
        let (mut a, mut b) = (lo, hi);
        let mut prefixes: Vec<Token> = Vec::new();
        let mut suffixes: Vec<Token> = Vec::new();
        let mut last = usize::MAX;
        while a < b && b - a != last {
            let s = &text[a..b];
            if self.special(s, specials).is_some() {
                break;
            }
            last = b - a;
            let pre = self.find_prefix(s);
            if pre != 0 && a + pre < b && self.special(&text[a + pre..b], specials).is_some() {
                prefixes.push(Token { start: a, end: a + pre });
                a += pre;
                break;
            }
            let suf = self.find_suffix(&text[a + pre..b]);
            if suf != 0 && a < b - suf && self.special(&text[a..b - suf], specials).is_some() {
                suffixes.push(Token { start: b - suf, end: b });
                b -= suf;
                break;
            }
            if pre != 0 && suf != 0 && pre + suf <= b - a {
                prefixes.push(Token { start: a, end: a + pre });
                suffixes.push(Token { start: b - suf, end: b });
                a += pre;
                b -= suf;
            } else if pre != 0 {
                prefixes.push(Token { start: a, end: a + pre });
                a += pre;
            } else if suf != 0 {
                suffixes.push(Token { start: b - suf, end: b });
                b -= suf;
            }
        }
        out.extend_from_slice(&prefixes);
        if a < b {
            let core = &text[a..b];
            if let Some(lens) = self.special(core, specials) {
                Self::push_special(a, lens, out);
            } else if core.bytes().all(|b| b.is_ascii_alphabetic()) {
                // Letters only: neither the URL nor an infix rule matches (tested below).
                out.push(Token { start: a, end: b });
            } else if core.contains('.') && self.url.find(core).is_some() {
                // (The URL pattern needs a dot in the host.)
                out.push(Token { start: a, end: b });
            } else {
                let mut start = a;
                for m in self.infix.find_iter(core) {
                    let (ms, me) = (a + m.0, a + m.1);
                    if ms == a {
                        continue;
                    }
                    if ms != start {
                        out.push(Token { start, end: ms });
                    }
                    if ms != me {
                        out.push(Token { start: ms, end: me });
                    }
                    start = me;
                }
                if start < b {
                    out.push(Token { start, end: b });
                }
            }
        }
        out.extend(suffixes.iter().rev());
    }

    /// `Tokenizer._apply_special_cases`: special cases that affix splitting cut apart are
    /// found as token sequences (every start, every pattern), kept longest first (then
    /// earliest; a span is refused when its first or last token is already taken, and every
    /// span marks its tokens taken), and replaced by the case's tokens when the span's text
    /// is the case.
    fn apply_special_cases(&self, text: &str, toks: &mut Vec<Token>, first: usize) {
        let t = |k: &Token| &text[k.start..k.end];
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for i in first..toks.len() {
            let s = t(&toks[i]);
            if !self.matcher_first[s.as_bytes()[0] as usize] {
                continue;
            }
            let Some(pats) = self.matcher.get(s) else { continue };
            for p in pats {
                if i + p.len() <= toks.len() && p.iter().zip(&toks[i..]).all(|(w, k)| **w == *t(k)) {
                    spans.push((i, i + p.len()));
                }
            }
        }
        if spans.is_empty() {
            return;
        }
        spans.sort_by(|x, y| (y.1 - y.0).cmp(&(x.1 - x.0)).then(x.0.cmp(&y.0)));
        spans.dedup();
        let mut seen: HashSet<usize> = HashSet::new();
        let mut kept = Vec::new();
        for &(s, e) in &spans {
            if !seen.contains(&s) && !seen.contains(&(e - 1)) {
                kept.push((s, e));
            }
            seen.extend(s..e);
        }
        kept.sort();
        let mut rebuilt = Vec::with_capacity(toks.len());
        let mut next = first;
        for (s, e) in kept {
            rebuilt.extend_from_slice(&toks[next..s]);
            let (lo, hi) = (toks[s].start, toks[e - 1].end);
            match self.specials.get(&text[lo..hi]) {
                Some(lens) => Self::push_special(lo, lens, &mut rebuilt),
                None => rebuilt.extend_from_slice(&toks[s..e]),
            }
            next = e;
        }
        rebuilt.extend_from_slice(&toks[next..]);
        toks.truncate(first);
        toks.extend_from_slice(&rebuilt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        english().words(s)
    }

    /// Outputs of spaCy 3.8.18 (`[t.text for t in spacy.blank("en")(s)]`, whitespace tokens
    /// dropped) for the cases that exercise each rule.
    #[test]
    fn tokens_are_spacys() {
        assert_eq!(
            words("Hello, world! It's a test... Don't stop."),
            ["Hello", ",", "world", "!", "It", "'s", "a", "test", "...", "Do", "n't", "stop", "."]
        );
        assert_eq!(words("don’t can’t I’m"), ["do", "n’t", "ca", "n’t", "I", "’m"]);
        assert_eq!(
            words("e-mail: foo@bar.com costs $3.50 (U.S.A.) 10km"),
            ["e", "-", "mail", ":", "foo@bar.com", "costs", "$", "3.50", "(", "U.S.A.", ")", "10", "km"]
        );
        assert_eq!(
            words("Visit https://example.com/a?b=c or www.test.org."),
            ["Visit", "https://example.com/a?b=c", "or", "www.test.org", "."]
        );
        assert_eq!(
            words("state-of-the-art 3-4 1,000,000 10:30 a/b"),
            ["state", "-", "of", "-", "the", "-", "art", "3", "-", "4", "1,000,000", "10:30", "a", "/", "b"]
        );
        assert_eq!(
            words("Go!!! (really?) \"quoted\" 'single'"),
            ["Go", "!", "!", "!", "(", "really", "?", ")", "\"", "quoted", "\"", "'", "single", "'"]
        );
        assert_eq!(words(":) :-( <3 ^_^"), [":)", ":-(", "<3", "^_^"]);
        assert_eq!(words("gonna wanna gotta"), ["gon", "na", "wanna", "got", "ta"]);
        assert_eq!(
            words("Mr. Smith vs. Dr. Who etc. Inc. Jan. 5th"),
            ["Mr.", "Smith", "vs.", "Dr.", "Who", "etc", ".", "Inc.", "Jan.", "5th"]
        );
        assert_eq!(
            words("#hashtag @user 50% 100°C £20 €5"),
            ["#", "hashtag", "@user", "50", "%", "100", "°", "C", "£", "20", "€", "5"]
        );
        assert_eq!(words("tab\tsep\u{a0}nbsp\u{2009}thin\u{3000}ideo"), ["tab", "sep", "nbsp", "thin", "ideo"]);
        assert_eq!(words("C++ C# .NET node.js"), ["C++", "C", "#", ".NET", "node.js"]);
        assert_eq!(words("A.B.C. x.y z..."), ["A.B.C.", "x.y", "z", "..."]);
        assert_eq!(words("line1\r\nline2\u{b}line3"), ["line1", "line2", "line3"]);
    }

    #[test]
    fn sentences_are_spacys() {
        let n = |s: &str| english().sentence_count(s);
        assert_eq!(n("Hello there my friend. "), 1);
        assert_eq!(n("Hello there my friend.  "), 2);
        assert_eq!(n("One.  Two"), 2);
        assert_eq!(n("Wait... what? Yes!"), 2);
        assert_eq!(n("See fig. 3. Done."), 3);
        assert_eq!(n("He said \"Stop.\" Then left."), 2);
        assert_eq!(n("Go!!! Now"), 2);
        assert_eq!(n("U.S. Army. Ok"), 2);
        assert_eq!(n("e.g. this. ok"), 2);
        assert_eq!(n("Dr. Smith arrived. He left."), 2);
        assert_eq!(n(""), 1);
        assert_eq!(n("   "), 1);
    }

    #[test]
    fn long_chunks_peel_every_affix() {
        // 200,000 closing brackets: 200,000 suffixes peeled one by one (linear work: the
        // special-case lookup and the look-behind suffixes only look at the chunk's tail).
        let closing = ")".repeat(200_000);
        let w = words(&closing);
        assert_eq!(w.len(), 200_000);
        assert!(w.iter().all(|t| *t == ")"));
        let quoted = format!("{}x", "\"".repeat(100_000));
        let w = words(&quoted);
        assert_eq!((w.len(), w[w.len() - 1]), (100_001, "x"));
    }

    #[test]
    fn letter_chunks_take_no_affix_rule() {
        // The fast path of `chunk` must agree with the rules it skips.
        let en = english();
        for w in [
            "hello",
            "A",
            "IS",
            "km",
            "in",
            "ft",
            "Mr",
            "co",
            "wwwexamplecom",
            "httpsfoo",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ] {
            assert_eq!(en.find_prefix(w), 0, "{w}");
            assert_eq!(en.find_suffix(w), 0, "{w}");
            assert!(!en.infix.has_match(w), "{w}");
            assert!(en.url.find(w).is_none(), "{w}");
        }
    }
}
