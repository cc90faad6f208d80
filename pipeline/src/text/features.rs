//! The quality classifier's features, exactly as Spark ML computes them, so that a model
//! trained by Spark and one trained by grist agree feature for feature:
//! - `Tokenizer`: `text.toLowerCase().split("\\s")`: lowercased, split at every single ASCII
//!   whitespace character (Java's `\s`: space, \t, \n, \x0B, \f, \r), so runs of whitespace
//!   and leading whitespace give empty tokens; trailing empty tokens are dropped (Java's
//!   `String.split`), and so is everything of an all-whitespace text but one empty token.
//! - `HashingTF` (Spark 3, `hashFuncVersion` 2): MurmurHash3 x86_32 of each token's UTF-8 bytes
//!   with seed 42, index = non-negative modulo `num_features` (default 2^18), values = term
//!   counts (or 1.0 with `binary`). Empty tokens are hashed like any other.
//! - With `ngrams = N` (N >= 2), Spark's `NGram` for each n in 2..=N as well (`n` consecutive
//!   tokens joined by one space; none when there are fewer than `n` tokens), its terms hashed
//!   into the same vector as the tokens: the Spark pipeline `Tokenizer`, `NGram(n=2)`, ...,
//!   `SQLTransformer("SELECT *, concat(tokens, bigrams, ...) AS terms")`, `HashingTF(terms)`.
//!
//! Not a model: this module turns text into sparse vectors.

/// Spark's `HashingTF` seed.
pub const SPARK_SEED: u32 = 42;
/// Spark's default `numFeatures`.
pub const DEFAULT_NUM_FEATURES: u32 = 1 << 18;

/// MurmurHash3 x86_32 (Austin Appleby's reference; Spark's `Murmur3_x86_32.hashUnsafeBytes2`).
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix_k1 = |k1: u32| k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h1 = seed;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        h1 ^= mix_k1(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        h1 = h1.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    let mut k1 = 0u32;
    for (i, &b) in tail.iter().enumerate() {
        k1 ^= (b as u32) << (8 * i);
    }
    h1 ^= mix_k1(k1);
    h1 ^= data.len() as u32;
    h1 ^= h1 >> 16;
    h1 = h1.wrapping_mul(0x85eb_ca6b);
    h1 ^= h1 >> 13;
    h1 = h1.wrapping_mul(0xc2b2_ae35);
    h1 ^ (h1 >> 16)
}

/// Java's `\s` without `UNICODE_CHARACTER_CLASS`.
fn is_java_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}

/// Spark's `Tokenizer`: lowercase, then Java's `split("\\s")`.
pub fn spark_tokenize(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut tokens: Vec<String> = lower.split(is_java_space).map(str::to_string).collect();
    // Java's split drops trailing empty strings; an input with no match at all is one token.
    while tokens.len() > 1 && tokens.last().is_some_and(|t| t.is_empty()) {
        tokens.pop();
    }
    if tokens.len() == 1 && tokens[0].is_empty() && !lower.is_empty() {
        // All whitespace: every piece was empty and Java removes them all.
        tokens.clear();
    }
    tokens
}

/// Calls `f` with the UTF-8 bytes of each of `text`'s Spark tokens, in order, exactly as
/// `spark_tokenize` would give them but without allocating per token: ASCII tokens are
/// lowercased into a reused buffer; others go through `str::to_lowercase` (Final_Sigma needs
/// the token's context, and whitespace bounds that context, so lowercasing per token is the
/// same as lowercasing the text).
pub fn for_each_token(text: &str, mut f: impl FnMut(&[u8])) {
    if text.is_empty() {
        f(b"");
        return;
    }
    // One pass over the bytes: Java's `\s` bytes never occur inside a multi-byte UTF-8
    // sequence, so splitting bytes is splitting characters.
    let bytes = text.as_bytes();
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    // Empty tokens seen since the last non-empty one: emitted only if a non-empty one follows
    // (Java drops trailing empty strings).
    let mut pending_empty = 0usize;
    let mut i = 0;
    while i <= bytes.len() {
        // The token starting at i.
        let start = i;
        let mut ascii = true;
        buf.clear();
        while i < bytes.len() && !is_java_space_byte(bytes[i]) {
            let b = bytes[i];
            ascii &= b < 0x80;
            buf.push(b.to_ascii_lowercase());
            i += 1;
        }
        if i == start {
            pending_empty += 1;
        } else {
            for _ in 0..pending_empty {
                f(b"");
            }
            pending_empty = 0;
            if ascii {
                f(&buf);
            } else {
                f(text[start..i].to_lowercase().as_bytes());
            }
        }
        i += 1; // past the separator (or the end)
    }
}

/// The `HashingTF` index of every Spark token of `text`, in order: `for_each_token` then
/// `bytes_index`, fused for speed. The whitespace of 64 bytes at a time is found as a bit mask
/// (SSE2 compares), and each token between two whitespace bytes is hashed whole: MurmurHash3
/// over 4-byte blocks, lowercased four bytes at a time. A token with a non-ASCII byte goes
/// through the exact path (`str::to_lowercase`, as Java lowercases it).
pub fn for_each_index(text: &str, num_features: u32, mut f: impl FnMut(u32)) {
    if text.is_empty() {
        f(bytes_index(b"", num_features));
        return;
    }
    let bytes = text.as_bytes();
    let empty = bytes_index(b"", num_features);
    let mut pending_empty = 0usize;
    let pow2 = num_features.is_power_of_two() && num_features <= 1 << 30;
    let mut token = |start: usize, end: usize| {
        if start == end {
            // Java's split keeps empty tokens between separators but drops trailing ones.
            pending_empty += 1;
            return;
        }
        for _ in 0..pending_empty {
            f(empty);
        }
        pending_empty = 0;
        let h = match murmur3_ascii_lowercase(&bytes[start..end]) {
            // Java's non-negative modulo; a mask where it equals it (no division).
            Some(h) if pow2 => h & (num_features - 1),
            Some(h) => (h as i32).rem_euclid(num_features as i32) as u32,
            None => bytes_index(text[start..end].to_lowercase().as_bytes(), num_features),
        };
        f(h);
    };
    let mut start = 0;
    let mut base = 0;
    while base < bytes.len() {
        let mut mask = space_mask(&bytes[base..]);
        while mask != 0 {
            let at = base + mask.trailing_zeros() as usize;
            token(start, at);
            start = at + 1;
            mask &= mask - 1;
        }
        base += 64;
    }
    token(start, bytes.len());
}

/// Bit k set where `bytes[k]` is Java's `\s` (space, tab, newline, vertical tab, form feed,
/// carriage return), for the first 64 bytes (fewer at the end).
#[inline(always)]
fn space_mask(bytes: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() >= 64 {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86_64; four unaligned 16-byte loads inside `bytes` (>= 64).
        unsafe {
            let mut mask = 0u64;
            for q in 0..4 {
                let v = _mm_loadu_si128(bytes.as_ptr().add(16 * q) as *const __m128i);
                let ctl = _mm_subs_epu8(_mm_sub_epi8(v, _mm_set1_epi8(0x09)), _mm_set1_epi8(0x0d - 0x09));
                let space = _mm_or_si128(
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8)),
                    _mm_cmpeq_epi8(ctl, _mm_setzero_si128()),
                );
                mask |= (_mm_movemask_epi8(space) as u32 as u64 & 0xffff) << (16 * q);
            }
            return mask;
        }
    }
    let mut mask = 0u64;
    for (k, &b) in bytes.iter().take(64).enumerate() {
        mask |= (is_java_space_byte(b) as u64) << k;
    }
    mask
}

/// MurmurHash3 (x86, 32-bit, Spark's seed) of an ASCII token lowercased, four bytes at a time;
/// None if the token has a byte outside ASCII.
#[inline(always)]
fn murmur3_ascii_lowercase(token: &[u8]) -> Option<u32> {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix_k1 = |k1: u32| k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    // Bytes 'A'..='Z' get 0x20 added: with the top bits cleared, x + 0x3f reaches 0x80 from
    // 'A' on and x + 0x25 from '[' on.
    let lower = |w: u32| {
        let low7 = w & 0x7f7f_7f7f;
        let upper = (low7.wrapping_add(0x3f3f_3f3f) & !low7.wrapping_add(0x2525_2525)) & !w & 0x8080_8080;
        w | (upper >> 2)
    };
    let mut h = SPARK_SEED;
    let mut high = 0u32;
    let mut blocks = token.chunks_exact(4);
    for b in &mut blocks {
        let w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        high |= w;
        h ^= mix_k1(lower(w));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let mut k = 0u32;
    for (i, &b) in blocks.remainder().iter().enumerate() {
        k |= (b as u32) << (8 * i);
    }
    high |= k;
    if high & 0x8080_8080 != 0 {
        return None;
    }
    h ^= mix_k1(lower(k));
    h ^= token.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    Some(h ^ (h >> 16))
}

fn is_java_space_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// The `HashingTF` index of a term's bytes.
pub fn bytes_index(term: &[u8], num_features: u32) -> u32 {
    (murmur3_x86_32(term, SPARK_SEED) as i32).rem_euclid(num_features as i32) as u32
}

/// The `HashingTF` index of a term.
pub fn term_index(term: &str, num_features: u32) -> u32 {
    let h = murmur3_x86_32(term.as_bytes(), SPARK_SEED) as i32;
    h.rem_euclid(num_features as i32) as u32
}

/// Spark's `HashingTF` over tokens: a sparse vector as (index, value) sorted by index.
pub fn hashing_tf(tokens: &[String], num_features: u32, binary: bool) -> Vec<(u32, f32)> {
    counts(tokens.iter().map(|t| term_index(t, num_features)).collect(), binary)
}

/// Sorted indices with their counts (or 1.0 each with `binary`).
fn counts(mut idx: Vec<u32>, binary: bool) -> Vec<(u32, f32)> {
    idx.sort_unstable();
    let mut out: Vec<(u32, f32)> = Vec::with_capacity(idx.len());
    for i in idx {
        match out.last_mut() {
            Some((j, v)) if *j == i => {
                if !binary {
                    *v += 1.0;
                }
            }
            _ => out.push((i, 1.0)),
        }
    }
    out
}

/// The largest n-gram order the features take (`ngrams`): trigrams.
pub const MAX_NGRAMS: u32 = 3;

/// Spark's `NGram(n)` over tokens: each `n` consecutive tokens joined by a space.
pub fn spark_ngrams(tokens: &[String], n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    tokens.windows(n).map(|w| w.join(" ")).collect()
}

/// Calls `f` with the bytes of every term of `text`: its Spark tokens and, with `ngrams` >= 2,
/// its n-grams for n in 2..=`ngrams`. Per token, in order: the token, then the n-grams that end
/// at it, shortest first. Each term is as long as the text it covers, so memory is bounded by
/// `ngrams` times the longest run of `ngrams` tokens.
pub fn for_each_term(text: &str, ngrams: u32, mut f: impl FnMut(&[u8])) {
    let keep = ngrams.clamp(1, MAX_NGRAMS) as usize - 1;
    if keep == 0 {
        return for_each_token(text, f);
    }
    // The last `keep` tokens, oldest first, and a buffer the n-grams are joined in.
    let mut recent: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::with_capacity(keep + 1);
    let mut gram: Vec<u8> = Vec::new();
    for_each_token(text, |t| {
        f(t);
        // `prev t`, then `prevprev prev t`: joined in one reused buffer.
        for k in 1..=recent.len() {
            gram.clear();
            for prev in recent.range(recent.len() - k..) {
                gram.extend_from_slice(prev);
                gram.push(b' ');
            }
            gram.extend_from_slice(t);
            f(&gram);
        }
        if recent.len() == keep {
            let mut reuse = recent.pop_front().unwrap_or_default();
            reuse.clear();
            reuse.extend_from_slice(t);
            recent.push_back(reuse);
        } else {
            recent.push_back(t.to_vec());
        }
    });
}

/// The `HashingTF` index of every term of `text` (`for_each_term`); unigrams take the fused
/// path (`for_each_index`).
pub fn for_each_term_index(text: &str, num_features: u32, ngrams: u32, mut f: impl FnMut(u32)) {
    if ngrams <= 1 {
        for_each_index(text, num_features, f);
    } else {
        for_each_term(text, ngrams, |t| f(bytes_index(t, num_features)));
    }
}

/// Tokenizer (then NGram with `ngrams` >= 2) then HashingTF, as one Spark pipeline would.
pub fn features(text: &str, num_features: u32, binary: bool, ngrams: u32) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = Vec::with_capacity(text.len() / 5 + 1);
    for_each_term_index(text, num_features, ngrams, |i| idx.push(i));
    counts(idx, binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_reference_vectors() {
        // Published MurmurHash3_x86_32 test vectors (SMHasher / Guava).
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(b"", 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(murmur3_x86_32(&[0, 0, 0, 0], 0), 0x2362_f9de);
        assert_eq!(murmur3_x86_32(b"aaaa", 0x9747_b28c), 0x5a97_808a);
        assert_eq!(murmur3_x86_32(b"abc", 0), 0xb3dd_93fa);
        assert_eq!(murmur3_x86_32(b"Hello, world!", 0x9747_b28c), 0x2488_4cba);
        assert_eq!(murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c), 0x2fa8_26cd);
    }

    #[test]
    fn java_split_rules() {
        assert_eq!(spark_tokenize("Hello  World"), ["hello", "", "world"]);
        assert_eq!(spark_tokenize(" lead"), ["", "lead"]);
        assert_eq!(spark_tokenize("trail \n\t"), ["trail"]);
        assert_eq!(spark_tokenize(""), [""]);
        assert!(spark_tokenize("   ").is_empty());
        // Only ASCII whitespace splits: a no-break space stays inside the token.
        assert_eq!(spark_tokenize("a\u{a0}b c"), ["a\u{a0}b", "c"]);
    }

    #[test]
    fn streaming_tokens_equal_spark_tokenize() {
        let cases = [
            "",
            " ",
            "   ",
            "a",
            " a",
            "a ",
            "a  b",
            "\tA\u{0B}B\x0cC\r\n",
            "ΟΔΟΣ Σ ΣΑΣ. x",
            "İstanbul ǅ ß Straße",
            "mixed ÀSCII and ascii  ",
            "a\u{a0}B c",
            "\n\nHello\n\nWorld\n",
            "abcd",
            "abcdefgh",
            "ABCDEFGHIJK lmnopq RS",
            "x\u{1F600}y emoji",
        ];
        for c in cases {
            let mut got: Vec<String> = Vec::new();
            for_each_token(c, |t| got.push(String::from_utf8(t.to_vec()).unwrap()));
            assert_eq!(got, spark_tokenize(c), "{c:?}");
            assert_eq!(features(c, 1 << 18, false, 1), hashing_tf(&spark_tokenize(c), 1 << 18, false), "{c:?}");
            let mut fused = Vec::new();
            for_each_index(c, 1000, |i| fused.push(i));
            let slow: Vec<u32> = spark_tokenize(c).iter().map(|t| term_index(t, 1000)).collect();
            assert_eq!(fused, slow, "{c:?}");
        }
    }

    #[test]
    fn fused_indices_equal_tokenize_then_hash_across_chunk_edges() {
        // Seeded random texts up to ~600 bytes: whitespace of every kind in runs (empty tokens,
        // leading and trailing runs), upper and lower ASCII at every block length, bytes at the
        // edges of the case ranges, and some non-ASCII letters (the exact path).
        let alphabet: Vec<char> = "aZ@[`{ \t\n\u{0B}\x0c\rmQ0".chars().collect();
        let prose: Vec<char> = "abcdeFGHIJ klmnopQRSTU,.".chars().collect();
        let unicode: Vec<char> = "ÉßΣİ\u{a0}ǅ".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for case in 0..2000 {
            let chars = if case % 2 == 0 { &alphabet } else { &prose };
            let mut text: String = (0..next(600)).map(|_| chars[next(chars.len())]).collect();
            if case % 5 == 0 {
                let at = text.char_indices().nth(next(text.chars().count() + 1)).map_or(text.len(), |(i, _)| i);
                text.insert(at, unicode[next(unicode.len())]);
            }
            let mut fused = Vec::new();
            for_each_index(&text, 1 << 18, |i| fused.push(i));
            let slow: Vec<u32> = spark_tokenize(&text).iter().map(|t| term_index(t, 1 << 18)).collect();
            assert_eq!(fused, slow, "{text:?}");
        }
    }

    #[test]
    fn term_frequencies_and_binary() {
        let v = features("the cat the hat the", 1 << 18, false, 1);
        let the = term_index("the", 1 << 18);
        assert_eq!(v.iter().find(|(i, _)| *i == the).map(|x| x.1), Some(3.0));
        assert_eq!(v.iter().map(|x| x.1).sum::<f32>(), 5.0);
        assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
        let b = features("the cat the hat the", 1 << 18, true, 1);
        assert!(b.iter().all(|x| x.1 == 1.0));
    }

    #[test]
    fn ngram_terms_are_spark_ngrams_of_the_tokens() {
        let cases = ["", "one", "  ", "The cat  sat\ton the MAT.\n", " lead and trail \n", "ΣΑΣ ß x", "a b c d e"];
        for c in cases {
            let tokens = spark_tokenize(c);
            for n in 1..=MAX_NGRAMS {
                let mut want: Vec<String> = tokens.clone();
                for k in 2..=n as usize {
                    want.extend(spark_ngrams(&tokens, k));
                }
                let mut got: Vec<String> = Vec::new();
                for_each_term(c, n, |t| got.push(String::from_utf8(t.to_vec()).unwrap()));
                let (mut g, mut w) = (got.clone(), want.clone());
                g.sort();
                w.sort();
                assert_eq!(g, w, "{c:?} n={n}");
                let all: Vec<String> = want;
                assert_eq!(features(c, 1 << 12, false, n), hashing_tf(&all, 1 << 12, false), "{c:?} n={n}");
            }
        }
        // The order within a text: each token, then the n-grams ending at it.
        let mut got: Vec<String> = Vec::new();
        for_each_term("A b  c", 3, |t| got.push(String::from_utf8(t.to_vec()).unwrap()));
        assert_eq!(got, ["a", "b", "a b", "", "b ", "a b ", "c", " c", "b  c"]);
    }

    #[test]
    fn bigram_features_count_each_pair() {
        let v = features("the cat the cat", 1 << 18, false, 2);
        let at = |t: &str| v.iter().find(|(i, _)| *i == term_index(t, 1 << 18)).map(|x| x.1);
        assert_eq!(at("the cat"), Some(2.0));
        assert_eq!(at("cat the"), Some(1.0));
        assert_eq!(at("the"), Some(2.0));
        assert_eq!(v.iter().map(|x| x.1).sum::<f32>(), 4.0 + 3.0);
        // Fewer tokens than n: no n-grams.
        assert_eq!(features("word", 1 << 18, false, 2), features("word", 1 << 18, false, 1));
    }
}
