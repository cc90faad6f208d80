//! Python 3.11's `str` semantics where the filters' anchors (datatrove, spaCy) depend on them:
//! `isspace`, `strip`, `split()`, `splitlines`, `isalpha`, `len` in code points, and the
//! Unicode categories spaCy's `is_punct` reads. Rust's own `char::is_whitespace`,
//! `str::lines` and `char::is_alphabetic` differ at the edges (U+001C..U+001F are Python
//! whitespace and line breaks; `isalpha` is exactly the L* categories), and a filter that
//! decides by a count must count what the anchor counts.
//!
//! Not a Python emulation: only the functions the filters call.

use std::sync::OnceLock;

/// Python's `str.isspace()` for one character (Unicode 14, CPython 3.11).
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// `s.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `s.lstrip()`.
pub fn lstrip(s: &str) -> &str {
    s.trim_start_matches(is_space)
}

/// `s.rstrip()`.
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

/// `s.split()`: runs of whitespace separate, no empty pieces.
pub fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// `len(s)`: code points.
pub fn len(s: &str) -> usize {
    if s.is_ascii() { s.len() } else { s.chars().count() }
}

/// Whether `c` ends a line for `str.splitlines()` (`\r\n` is one break, see [`splitlines`]).
pub fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{1c}'..='\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// `s.splitlines()`: no trailing empty line for a final break; `""` gives no lines.
pub fn splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if is_line_break(c) {
            out.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r'
                && let Some(&(_, '\n')) = it.peek()
            {
                it.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// `s.count(sub)`: non-overlapping occurrences.
pub fn count(s: &str, sub: &str) -> usize {
    s.matches(sub).count()
}

/// A sorted set of code point ranges (a Unicode category), searched by bisection.
struct Ranges(Vec<(u32, u32)>);

impl Ranges {
    /// The ranges of a regex class like `\p{L}` (the Unicode tables of `regex-syntax`).
    fn of(class: &str) -> Ranges {
        let hir = regex_syntax::Parser::new().parse(class).ok();
        let mut v = Vec::new();
        if let Some(regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(c))) =
            hir.as_ref().map(|h| h.kind())
        {
            v.extend(c.iter().map(|r| (r.start() as u32, r.end() as u32)));
        }
        Ranges(v)
    }

    fn contains(&self, c: char) -> bool {
        let c = c as u32;
        self.0
            .binary_search_by(|&(lo, hi)| {
                if hi < c {
                    std::cmp::Ordering::Less
                } else if lo > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

/// Python's `str.isalpha()` for one character: general category Lu, Ll, Lt, Lm or Lo.
pub fn is_alpha(c: char) -> bool {
    static L: OnceLock<Ranges> = OnceLock::new();
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    L.get_or_init(|| Ranges::of(r"\p{L}")).contains(c)
}

/// Unicode general category P* (spaCy's `is_punct` asks it of every character of a token).
pub fn is_punct(c: char) -> bool {
    static P: OnceLock<Ranges> = OnceLock::new();
    if c.is_ascii() {
        // ASCII punctuation minus the symbols (S*): $ + < = > ^ ` | ~.
        return c.is_ascii_punctuation() && !matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~');
    }
    P.get_or_init(|| Ranges::of(r"\p{P}")).contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_pythons() {
        // Python: ''.join(chr(c) for c in range(0x3001) if chr(c).isspace())
        let py: Vec<u32> = vec![
            9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199,
            8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288,
        ];
        let ours: Vec<u32> =
            (0..0x3001u32).filter_map(char::from_u32).filter(|&c| is_space(c)).map(|c| c as u32).collect();
        assert_eq!(ours, py);
        assert_eq!(split(" a\u{1f}b\u{a0} c ").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(strip("\u{1c} x \u{3000}"), "x");
    }

    #[test]
    fn splitlines_is_pythons() {
        assert!(splitlines("").is_empty());
        assert_eq!(
            splitlines("a\nb\r\nc\rd\u{b}e\u{c}f\u{1c}g\u{85}h\u{2028}i\u{2029}j\n"),
            ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
        );
        assert_eq!(splitlines("\n\nx"), ["", "", "x"]);
        assert_eq!(splitlines("x\r"), ["x"]);
        assert_eq!(splitlines("x\r\r\n"), ["x", ""]);
    }

    #[test]
    fn categories_are_unicodes() {
        assert!(is_alpha('é') && is_alpha('ß') && is_alpha('中') && is_alpha('ʰ'));
        // Nl (Roman numeral) and a combining mark are alphabetic to Rust, not to Python.
        assert!('Ⅻ'.is_alphabetic() && !is_alpha('Ⅻ'));
        assert!(!is_alpha('\u{301}') && !is_alpha('1') && !is_alpha('_'));
        assert!(is_punct('.') && is_punct('«') && is_punct('—') && is_punct('、') && is_punct('_'));
        assert!(!is_punct('$') && !is_punct('+') && !is_punct('°') && !is_punct('a'));
        assert_eq!(len("naïve"), 5);
        assert_eq!(count("....", "..."), 1);
        assert_eq!(count("......", "..."), 2);
    }
}
