//! GPT-2 byte-pair encoding (r50k_base), token for token what tiktoken gives, without a regex
//! engine. Two parts:
//!
//! - **Pieces.** GPT-2 splits text with the pattern
//!   `'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+$|\s+(?!\S)|\s` before BPE.
//!   [`Gpt2Bpe::piece_end`] is that pattern as a hand-written scanner: every character falls in
//!   one of four disjoint classes (letter, number, white space, other), read from a two-level
//!   table built from the same Unicode tables the `regex` crate (and so tiktoken) uses.
//! - **Merges.** A piece that is a token is one lookup; otherwise its bytes are merged pair by
//!   pair, lowest rank first and leftmost among equals, as tiktoken does. tiktoken looks a pair up
//!   by the bytes of its concatenation; here the same question is one integer lookup in a table
//!   of every (left, right) token pair whose bytes join into a token.
//!
//! Ranks come from tiktoken-rs (its compiled-in `r50k_base.tiktoken`), read once. Equality with
//! tiktoken is tested on golden ids from Python tiktoken and, differentially, against tiktoken-rs
//! on generated hostile text (`tests::agrees_with_tiktoken_on_generated_text`).

use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// Tokens of r50k_base with a byte sequence (`<|endoftext|>`, 50256, is not one).
const MERGEABLE: u32 = 50256;
/// Pieces at least this long merge through a heap (O(n log n)); shorter ones by a linear scan.
const HEAP_FROM: usize = 96;

/// Character classes of the GPT-2 pattern; disjoint (White_Space holds no letter or number).
const OTHER: u8 = 0;
const LETTER: u8 = 1;
const NUMBER: u8 = 2;
const SPACE: u8 = 3;

/// A multiply-rotate hasher for the integer and short byte keys of the tables (the keys are
/// fixed data, not input: no flooding to defend against).
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Hasher for Fx {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let mut tail = 0u64;
        for (i, &b) in chunks.remainder().iter().enumerate() {
            tail |= u64::from(b) << (8 * i);
        }
        self.write_u64(tail ^ (bytes.len() as u64) << 56);
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    /// A multiply leaves the low bits, which pick the bucket, depending on the low bits of the
    /// key alone (for a pair key: the right token only): fold the high half down.
    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0 ^ (self.0 >> 32);
        h.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (h >> 29)
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// The GPT-2 encoder: rank tables and the character-class table.
pub struct Gpt2Bpe {
    /// Bytes of each mergeable token, by id.
    bytes: Vec<Box<[u8]>>,
    /// Token of each byte sequence that is one.
    whole: FxMap<Box<[u8]>, u32>,
    /// `left << 16 | right` (ids are under 2^16) -> the token their bytes join into.
    pairs: FxMap<u32, u32>,
    /// Token of each single byte.
    byte: [u32; 256],
    /// Character class: `blocks[index[c >> 8]][c & 255]`.
    index: Vec<u16>,
    blocks: Vec<[u8; 256]>,
}

impl std::fmt::Debug for Gpt2Bpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpt2Bpe").field("tokens", &self.bytes.len()).field("pairs", &self.pairs.len()).finish()
    }
}

impl Gpt2Bpe {
    /// The process-wide encoder, built on first use (about 0.1 s).
    pub fn get() -> &'static Gpt2Bpe {
        static BPE: OnceLock<Gpt2Bpe> = OnceLock::new();
        BPE.get_or_init(Gpt2Bpe::build)
    }

    fn build() -> Gpt2Bpe {
        let core = tiktoken_rs::r50k_base_singleton();
        let bytes: Vec<Box<[u8]>> =
            (0..MERGEABLE).map(|t| core.decode_bytes(&[t]).unwrap_or_default().into_boxed_slice()).collect();
        let mut whole = FxMap::default();
        for (t, b) in bytes.iter().enumerate() {
            whole.insert(b.clone(), t as u32);
        }
        let mut byte = [u32::MAX; 256];
        for (b, slot) in byte.iter_mut().enumerate() {
            *slot = whole.get(&[b as u8][..]).copied().unwrap_or(u32::MAX);
        }
        let mut pairs = FxMap::default();
        for (t, b) in bytes.iter().enumerate() {
            for k in 1..b.len() {
                if let (Some(&l), Some(&r)) = (whole.get(&b[..k]), whole.get(&b[k..])) {
                    pairs.insert(l << 16 | r, t as u32);
                }
            }
        }
        let (index, blocks) = class_table();
        Gpt2Bpe { bytes, whole, pairs, byte, index, blocks }
    }

    /// Bytes of a token (`None` for `<|endoftext|>` and ids outside the vocabulary).
    pub fn token_bytes(&self, t: u32) -> Option<&[u8]> {
        self.bytes.get(t as usize).map(|b| &b[..])
    }

    /// Appends the tokens of `text` to `out` (no special tokens: `<|endoftext|>` in the text is
    /// ordinary text, as tiktoken's `encode_ordinary`).
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let (scratch, cache) = &mut *c;
            let cache = cache.get_or_insert_with(|| vec![Slot::EMPTY; CACHE_SLOTS].into_boxed_slice());
            let s = text.as_bytes();
            let mut i = 0;
            while i < s.len() {
                let end = self.piece_end(s, i);
                let piece = &s[i..end];
                i = end;
                if piece.len() == 1 {
                    out.push(self.byte[piece[0] as usize]);
                    continue;
                }
                if piece.len() > SLOT_BYTES {
                    self.encode_piece(piece, out, scratch);
                    continue;
                }
                let key = Slot::key(piece);
                let slot = &mut cache[Slot::index(&key)];
                if slot.len as usize == piece.len() && slot.key == key {
                    out.extend_from_slice(&slot.toks[..slot.ntok as usize]);
                    continue;
                }
                let from = out.len();
                self.encode_piece(piece, out, scratch);
                let toks = &out[from..];
                if toks.len() <= SLOT_TOKENS {
                    slot.key = key;
                    slot.len = piece.len() as u8;
                    slot.ntok = toks.len() as u8;
                    slot.toks[..toks.len()].copy_from_slice(toks);
                }
            }
        })
    }

    /// Byte offsets that cut `text` into pieces of about `chunk` bytes whose tokens, encoded
    /// one by one and joined, are the tokens of the whole: every cut falls where a white-space
    /// character follows one that is not. No match of the pattern holds both (white space joins
    /// only a run of white space, or a run after one space), and a match depends on the text
    /// from its start only. A text with no such place past `chunk` is not cut there.
    pub fn cuts(&self, text: &str, chunk: usize) -> Vec<usize> {
        let s = text.as_bytes();
        let mut cuts = Vec::new();
        let mut at = chunk.max(1);
        while at < s.len() {
            while at < s.len() && s[at] & 0xC0 == 0x80 {
                at += 1;
            }
            let mut prev_space = true;
            let mut found = None;
            let mut i = at;
            while i < s.len() {
                let (_, class, n) = self.char_at(s, i);
                let space = class == SPACE;
                if space && !prev_space && i > at {
                    found = Some(i);
                    break;
                }
                prev_space = space;
                i += n;
            }
            let Some(cut) = found else { break };
            cuts.push(cut);
            at = cut + chunk;
        }
        cuts
    }

    /// The tokens of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        self.encode_into(text, &mut out);
        out
    }

    #[inline]
    fn class(&self, c: u32) -> u8 {
        self.blocks[self.index[(c >> 8) as usize] as usize][(c & 255) as usize]
    }

    /// The character at byte `i` of valid UTF-8 and its class and length.
    #[inline]
    fn char_at(&self, s: &[u8], i: usize) -> (u32, u8, usize) {
        let b0 = s[i];
        if b0 < 0x80 {
            return (u32::from(b0), ASCII[b0 as usize], 1);
        }
        let (c, n) = if b0 < 0xE0 {
            ((u32::from(b0 & 0x1F) << 6) | u32::from(s[i + 1] & 0x3F), 2)
        } else if b0 < 0xF0 {
            ((u32::from(b0 & 0x0F) << 12) | (u32::from(s[i + 1] & 0x3F) << 6) | u32::from(s[i + 2] & 0x3F), 3)
        } else {
            let c = (u32::from(b0 & 0x07) << 18)
                | (u32::from(s[i + 1] & 0x3F) << 12)
                | (u32::from(s[i + 2] & 0x3F) << 6)
                | u32::from(s[i + 3] & 0x3F);
            (c, 4)
        };
        (c, self.class(c), n)
    }

    /// The end of the run of `class` characters starting at `i`.
    #[inline]
    fn run_end(&self, s: &[u8], mut i: usize, class: u8) -> usize {
        while i < s.len() {
            let b = s[i];
            if b < 0x80 {
                if ASCII[b as usize] != class {
                    break;
                }
                i += 1;
            } else {
                let (_, k, n) = self.char_at(s, i);
                if k != class {
                    break;
                }
                i += n;
            }
        }
        i
    }

    /// The end of the GPT-2 pattern's match starting at byte `i` (a character boundary of valid
    /// UTF-8, before the end). Alternatives in the pattern's order:
    /// `'(?:[sdmt]|ll|ve|re)`, ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`, `\s+$`,
    /// `\s+(?!\S)`, `\s`.
    pub fn piece_end(&self, s: &[u8], i: usize) -> usize {
        let (c, class, n) = self.char_at(s, i);
        if c == u32::from(b'\'') {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(b's' | b'd' | b'm' | b't'), _) => return i + 2,
                (Some(b'l'), Some(b'l')) | (Some(b'v' | b'r'), Some(b'e')) => return i + 3,
                _ => {}
            }
        }
        // ` ?X+`: a space joins the run after it.
        let (start, run) = if c == u32::from(b' ') && i + 1 < s.len() {
            let (_, k, _) = self.char_at(s, i + 1);
            (i + 1, k)
        } else {
            (i, class)
        };
        if run != SPACE {
            return self.run_end(s, start, run);
        }
        // White space at `i`: the whole run at the end of the text; else all but its last
        // character (which may start the next piece), or the one character of a run of one.
        let end = self.run_end(s, i, SPACE);
        if end == s.len() {
            return end;
        }
        let mut last = end - 1;
        while s[last] & 0xC0 == 0x80 {
            last -= 1;
        }
        if last > i { last } else { i + n }
    }

    /// Appends the tokens of one piece.
    fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>, scratch: &mut Scratch) {
        if piece.len() == 1 {
            out.push(self.byte[piece[0] as usize]);
            return;
        }
        if let Some(&t) = self.whole.get(piece) {
            out.push(t);
            return;
        }
        if piece.len() < HEAP_FROM {
            self.merge_scan(piece, out, scratch);
        } else {
            self.merge_heap(piece, out);
        }
    }

    #[inline]
    fn pair(&self, l: u32, r: u32) -> u32 {
        self.pairs.get(&(l << 16 | r)).copied().unwrap_or(u32::MAX)
    }

    /// BPE by repeated scans for the lowest rank (tiktoken's `_byte_pair_merge`): quadratic, fast
    /// for the short pieces that are nearly all of them. A token's id is its rank.
    fn merge_scan(&self, piece: &[u8], out: &mut Vec<u32>, scratch: &mut Scratch) {
        let toks = &mut scratch.toks;
        let ranks = &mut scratch.ranks;
        toks.clear();
        ranks.clear();
        toks.extend(piece.iter().map(|&b| self.byte[b as usize]));
        ranks.extend(toks.windows(2).map(|w| self.pair(w[0], w[1])));
        loop {
            let (mut best, mut at) = (u32::MAX, 0);
            for (i, &r) in ranks.iter().enumerate() {
                if r < best {
                    (best, at) = (r, i);
                }
            }
            if best == u32::MAX {
                break;
            }
            toks[at] = best;
            toks.remove(at + 1);
            ranks.remove(at);
            if at > 0 {
                ranks[at - 1] = self.pair(toks[at - 1], best);
            }
            if at < ranks.len() {
                ranks[at] = self.pair(best, toks[at + 1]);
            }
        }
        out.extend_from_slice(toks);
    }

    /// BPE with a heap of candidate merges over a linked list of parts (O(n log n)), for long
    /// pieces; the same merges as [`Self::merge_scan`]: lowest rank first, leftmost among equals.
    /// A piece can be as long as a document (a run of one class), so the state is 12 bytes per
    /// byte and a heap entry 8: `rank << 32 | left start`. An entry is live when the pair now at
    /// its position still has its rank; every pair that forms is pushed, so the smallest live
    /// entry is the lowest-ranked, leftmost pair, as in the scan.
    fn merge_heap(&self, piece: &[u8], out: &mut Vec<u32>) {
        const GONE: u32 = u32::MAX;
        let n = piece.len();
        debug_assert!(n < GONE as usize);
        // Part starting at byte i: its token (GONE once merged into its left neighbour), the
        // start of the next part (n at the end), the start of the previous one (GONE at 0).
        let mut tok: Vec<u32> = piece.iter().map(|&b| self.byte[b as usize]).collect();
        let mut next: Vec<u32> = (1..=n as u32).collect();
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        let entry = |rank: u32, at: u32| std::cmp::Reverse(u64::from(rank) << 32 | u64::from(at));
        let mut heap: BinaryHeap<std::cmp::Reverse<u64>> = BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            let r = self.pair(tok[i], tok[i + 1]);
            if r != u32::MAX {
                heap.push(entry(r, i as u32));
            }
        }
        while let Some(std::cmp::Reverse(e)) = heap.pop() {
            let (r, l) = ((e >> 32) as u32, (e & 0xFFFF_FFFF) as usize);
            let m = next[l] as usize;
            if tok[l] == GONE || m >= n || self.pair(tok[l], tok[m]) != r {
                continue; // stale: the pair at l changed since this entry was pushed
            }
            tok[l] = r;
            tok[m] = GONE;
            let e = next[m];
            next[l] = e;
            if (e as usize) < n {
                prev[e as usize] = l as u32;
                let nr = self.pair(r, tok[e as usize]);
                if nr != u32::MAX {
                    heap.push(entry(nr, l as u32));
                }
            }
            let p = prev[l];
            if p != GONE {
                let pr = self.pair(tok[p as usize], r);
                if pr != u32::MAX {
                    heap.push(entry(pr, p));
                }
            }
        }
        let mut i = 0;
        while i < n {
            out.push(tok[i]);
            i = next[i] as usize;
        }
    }
}

/// Buffers reused across the pieces of one text.
#[derive(Default)]
struct Scratch {
    toks: Vec<u32>,
    ranks: Vec<u32>,
}

/// Pieces of at most this many bytes are remembered...
const SLOT_BYTES: usize = 32;
/// ... when they have at most this many tokens.
const SLOT_TOKENS: usize = 7;
/// Slots of the cache (64 bytes each: 1 MiB per thread).
const CACHE_SLOTS: usize = 1 << 14;

/// One slot of the piece cache: a piece's bytes (zero-padded) and its tokens. Text repeats its
/// words: on the real crawl one piece in six is new, so most pieces cost one probe of this
/// per-thread table instead of a probe of the 50,256-token table and, for a third of them, a
/// merge. It remembers a pure function: the tokens are the same with or without it.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    key: [u64; 4],
    toks: [u32; SLOT_TOKENS],
    len: u8,
    ntok: u8,
}

impl Slot {
    const EMPTY: Slot = Slot { key: [0; 4], toks: [0; SLOT_TOKENS], len: 0, ntok: 0 };

    #[inline]
    fn key(piece: &[u8]) -> [u64; 4] {
        let mut b = [0u8; SLOT_BYTES];
        b[..piece.len()].copy_from_slice(piece);
        let w =
            |i: usize| u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
        [w(0), w(8), w(16), w(24)]
    }

    #[inline]
    fn index(key: &[u64; 4]) -> usize {
        let mut h = key[0].wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h = (h ^ key[1]).rotate_left(23).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        h = (h ^ key[2] ^ key[3].rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 50) as usize & (CACHE_SLOTS - 1)
    }
}

thread_local! {
    /// Each thread's merge buffers and piece cache (allocated on its first text).
    static CACHE: std::cell::RefCell<(Scratch, Option<Box<[Slot]>>)> = const { std::cell::RefCell::new((Scratch { toks: Vec::new(), ranks: Vec::new() }, None)) };
}

/// Classes of the ASCII characters (the same as the table's; kept apart for the fast path).
static ASCII: [u8; 128] = {
    let mut t = [OTHER; 128];
    let mut c = 0;
    while c < 128 {
        let b = c as u8;
        t[c] = if b.is_ascii_alphabetic() {
            LETTER
        } else if b.is_ascii_digit() {
            NUMBER
        } else if matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r') {
            // White_Space in ASCII: TAB, LF, VT, FF, CR, space (checked against the Unicode
            // table in `tests::ascii_classes_equal_the_unicode_table`).
            SPACE
        } else {
            OTHER
        };
        c += 1;
    }
    t
};

/// The two-level class table for every code point, from `regex-syntax`'s Unicode classes (the
/// ones `\p{L}`, `\p{N}` and `\s` mean in tiktoken's regex).
fn class_table() -> (Vec<u16>, Vec<[u8; 256]>) {
    let mut flat = vec![OTHER; 0x110000];
    for (pattern, class) in [(r"\p{L}", LETTER), (r"\p{N}", NUMBER), (r"\s", SPACE)] {
        for (lo, hi) in unicode_ranges(pattern) {
            for c in lo..=hi {
                flat[c as usize] = class;
            }
        }
    }
    let mut blocks: Vec<[u8; 256]> = Vec::new();
    let mut seen: HashMap<[u8; 256], u16> = HashMap::new();
    let mut index = Vec::with_capacity(0x1100);
    for chunk in flat.chunks_exact(256) {
        let mut b = [0u8; 256];
        b.copy_from_slice(chunk);
        let id = *seen.entry(b).or_insert_with(|| {
            blocks.push(b);
            (blocks.len() - 1) as u16
        });
        index.push(id);
    }
    (index, blocks)
}

/// The code point ranges of a Unicode class in `regex` syntax.
fn unicode_ranges(pattern: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class, HirKind};
    // The three patterns are constants that parse in every regex-syntax with Unicode tables.
    let hir = regex_syntax::Parser::new().parse(pattern).unwrap_or_else(|e| unreachable!("{pattern}: {e}"));
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect(),
        other => unreachable!("{pattern} parsed to {other:?}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ascii_classes_equal_the_unicode_table() {
        let bpe = Gpt2Bpe::get();
        for c in 0..128u32 {
            assert_eq!(ASCII[c as usize], bpe.class(c), "U+{c:04X}");
        }
    }

    /// A deterministic generator of text built to hit every branch of the scanner and the
    /// merges: contractions and near-misses, spaces before each class, runs of mixed white
    /// space (at the end too), non-BMP letters and numbers, combining marks, long pieces.
    fn hostile_text(seed: u64, len: usize) -> String {
        const ATOMS: &[&str] = &[
            "'s",
            "'t",
            "'re",
            "'ve",
            "'m",
            "'ll",
            "'d",
            "'S",
            "'x",
            "''",
            "' ",
            "'l",
            "'v",
            "'r",
            " ",
            "  ",
            "   ",
            "\n",
            "\n\n",
            "\r\n",
            "\t",
            "\u{a0}",
            "\u{3000}",
            "\u{2028}",
            "\u{1c}",
            "\u{85}",
            "a",
            "Z",
            "hello",
            " world",
            "don",
            "ñ",
            "é",
            "e\u{301}",
            "ß",
            "İ",
            "Ω",
            "ж",
            "中文",
            "日本語",
            "한국어",
            "ا",
            "\u{10400}",
            "\u{1d400}",
            "1",
            "42",
            "٣",
            "½",
            "Ⅻ",
            "\u{1d7ce}",
            "!",
            "?!",
            "...",
            "—",
            "“",
            "”",
            "😀",
            "👩\u{200d}💻",
            "\u{feff}",
            "\u{200b}",
            "<|endoftext|>",
            "$",
            "%",
            "\u{7f}",
            "\u{0}",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "                                ",
            "================================================",
            "0000000000",
        ];
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut s = String::new();
        while s.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push_str(ATOMS[(x % ATOMS.len() as u64) as usize]);
        }
        s
    }

    #[test]
    fn agrees_with_tiktoken_on_generated_text() {
        let core = tiktoken_rs::r50k_base_singleton();
        let bpe = Gpt2Bpe::get();
        for seed in 0..400 {
            let text = hostile_text(seed, 1 + (seed as usize * 37) % 700);
            assert_eq!(bpe.encode(&text), core.encode_ordinary(&text), "seed {seed}: {text:?}");
        }
    }

    #[test]
    fn texts_cut_at_the_cuts_encode_as_the_whole() {
        let bpe = Gpt2Bpe::get();
        let mut cut_somewhere = 0;
        for seed in 0..300 {
            let text = hostile_text(seed, 50 + (seed as usize * 53) % 2000);
            let whole = bpe.encode(&text);
            for chunk in [1, 7, 40, 333] {
                let cuts = bpe.cuts(&text, chunk);
                cut_somewhere += cuts.len();
                let mut joined = Vec::new();
                let mut from = 0;
                for &c in cuts.iter().chain(std::iter::once(&text.len())) {
                    assert!(c > from, "seed {seed} chunk {chunk}: cut {c} after {from}");
                    bpe.encode_into(&text[from..c], &mut joined);
                    from = c;
                }
                assert_eq!(joined, whole, "seed {seed} chunk {chunk} cuts {cuts:?}");
            }
        }
        assert!(cut_somewhere > 10_000, "{cut_somewhere}");
    }

    #[test]
    fn long_pieces_merge_as_tiktoken_does() {
        // Pieces past HEAP_FROM take the heap path; tiktoken switches at 100 bytes. Each text is
        // one piece (a run of one class), long enough for both and with repeated pairs (ties).
        let core = tiktoken_rs::r50k_base_singleton();
        let bpe = Gpt2Bpe::get();
        let texts = [
            "a".repeat(1000),
            "ab".repeat(333),
            "Supercalifragilisticexpialidocious".repeat(20),
            " ".to_string() + &"thequickbrownfox".repeat(40),
            "1234567890".repeat(50),
            "!?".repeat(300),
            "ñandú".repeat(100),
            "中文字符".repeat(80),
        ];
        // A document-long piece (1 MiB of one letter run, with ties everywhere): the heap path
        // alone, against tiktoken.
        let long = "abracadabra".repeat(100_000);
        assert_eq!(bpe.encode(&long), core.encode_ordinary(&long));
        for t in &texts {
            assert_eq!(bpe.encode(t), core.encode_ordinary(t), "{t:.40}");
            let mut scan = Vec::new();
            bpe.merge_scan(t.as_bytes(), &mut scan, &mut Scratch::default());
            let mut heap = Vec::new();
            bpe.merge_heap(t.as_bytes(), &mut heap);
            assert_eq!(scan, heap, "{t:.40}");
        }
    }

    #[test]
    fn every_token_round_trips_and_pairs_join_bytes() {
        let bpe = Gpt2Bpe::get();
        for t in 0..MERGEABLE {
            let b = bpe.token_bytes(t).unwrap();
            assert!(!b.is_empty(), "token {t}");
            assert_eq!(bpe.whole[b], t);
        }
        for (&k, &t) in bpe.pairs.iter().take(5000) {
            let (l, r) = (k >> 16, k & 0xFFFF);
            let joined = [bpe.token_bytes(l).unwrap(), bpe.token_bytes(r).unwrap()].concat();
            assert_eq!(bpe.token_bytes(t).unwrap(), &joined[..]);
        }
        assert_eq!(bpe.token_bytes(50256), None);
    }
}
