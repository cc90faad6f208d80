//! Near-duplicate detection's building blocks: text normalization, exact-duplicate hashes,
//! feature sets, MinHash signatures and LSH band keys, in the two modes of `[dedup]`:
//!
//! - `gpt3` (GPT-3's "Spark's MinHashLSH ... using the same features as were used for
//!   classification"): the set of the quality classifier's HashingTF indices (Spark's
//!   Tokenizer and MurmurHash3, see `features`), hashed as Spark's `MinHashLSH` does,
//!   `h_i(x) = ((1 + x) * a_i + b_i) mod 2038074743` with coefficients drawn by
//!   `java.util.Random` from the seed exactly as Spark draws them, one hash per table
//!   (`num_hash_tables`); two documents are candidates when any table's value is equal.
//! - `shingles` (datatrove's and datasketch's way): word n-grams of the normalized text,
//!   each hashed with xxh3, then `k = bands x rows` hash functions of its low 32 bits,
//!   `h_i(x) = (a_i * x + b_i) >> 32` in 64-bit arithmetic (multiply-add-shift, strongly
//!   universal; 32-bit values as datasketch's), minimum over the set; a band's key is the xxh3
//!   of its `rows` values, and two documents are candidates when any band's key is equal.
//!
//! Normalization (exact dedup and shingles): Unicode NFC, every run of whitespace (Unicode
//! `White_Space`) collapsed to one space, leading and trailing whitespace removed, and
//! lowercased when configured. Documents with fewer words than the n-gram size have no
//! shingles: they get no signature and take part in exact dedup only.

use icu_normalizer::ComposingNormalizerBorrowed;
use shards::cpu::Simd;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed, xxh3_128};

use crate::text::features::for_each_index;

/// Spark `MinHashLSH.HASH_PRIME`.
pub const SPARK_HASH_PRIME: u64 = 2_038_074_743;

/// NFC, whitespace runs collapsed to one space, trimmed; lowercased if `lowercase`.
pub fn normalize(text: &str, lowercase: bool) -> String {
    let mut words = Words::default();
    words.normalize(text, lowercase);
    // Only whole UTF-8 sequences were written.
    String::from_utf8(words.text().to_vec()).unwrap_or_default()
}

/// Whether an ASCII byte is Unicode `White_Space` (what `split_whitespace` splits on).
#[inline(always)]
fn ascii_space(b: u8) -> bool {
    b == b' ' || b.wrapping_sub(b'\t') <= b'\r' - b'\t'
}

/// A space for whitespace, else the byte, lowercased if asked.
#[inline(always)]
fn ascii_map(b: u8, lowercase: bool) -> u8 {
    if ascii_space(b) {
        b' '
    } else if lowercase && b.wrapping_sub(b'A') < 26 {
        b | 0x20
    } else {
        b
    }
}

/// A normalized text and where its words start, built in one pass into buffers reused from
/// document to document (no allocation or clearing once they have grown): what exact keys and
/// shingles need.
#[derive(Debug, Default)]
pub struct Words {
    /// The normalized text (UTF-8) is `text[..len]`: words separated by exactly one space.
    text: Vec<u8>,
    len: usize,
    /// Byte offsets of the word starts are `starts[..words]`.
    starts: Vec<usize>,
    words: usize,
    /// Scratch for shingle hashes.
    hashes: Vec<u64>,
}

/// Bytes the ASCII pass looks at together.
const CHUNK: usize = 32;

/// Maps a chunk as [`ascii_map`] does and returns its whitespace mask (bit k: byte k).
#[inline(always)]
fn map_chunk(chunk: &[u8; CHUNK], lowercase: bool, mapped: &mut [u8; CHUNK]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SSE2 is part of x86_64 itself: no detection needed. Unsigned "x - lo <= span" is
        // "saturating (x - lo) - span == 0".
        // SAFETY: SSE2 is always present on x86_64; the loads and stores are unaligned ones of
        // 16 bytes inside the two 32-byte arrays.
        unsafe {
            let in_range = |v: __m128i, lo: i8, span: i8| {
                _mm_cmpeq_epi8(
                    _mm_subs_epu8(_mm_sub_epi8(v, _mm_set1_epi8(lo)), _mm_set1_epi8(span)),
                    _mm_setzero_si128(),
                )
            };
            let mut mask = 0u32;
            for half in 0..2 {
                let v = _mm_loadu_si128(chunk.as_ptr().add(16 * half) as *const __m128i);
                let space = _mm_or_si128(
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8)),
                    in_range(v, b'\t' as i8, (b'\r' - b'\t') as i8),
                );
                let mut m = v;
                if lowercase {
                    m = _mm_or_si128(m, _mm_and_si128(in_range(v, b'A' as i8, 25), _mm_set1_epi8(0x20)));
                }
                m = _mm_or_si128(_mm_andnot_si128(space, m), _mm_and_si128(space, _mm_set1_epi8(b' ' as i8)));
                _mm_storeu_si128(mapped.as_mut_ptr().add(16 * half) as *mut __m128i, m);
                mask |= (_mm_movemask_epi8(space) as u32 & 0xffff) << (16 * half);
            }
            mask
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut mask = 0u32;
        for k in 0..CHUNK {
            mask |= (ascii_space(chunk[k]) as u32) << k;
            mapped[k] = ascii_map(chunk[k], lowercase);
        }
        mask
    }
}

impl Words {
    /// The normalized text.
    pub fn text(&self) -> &[u8] {
        &self.text[..self.len]
    }

    /// Byte offsets of the words' starts in [`Words::text`].
    pub fn starts(&self) -> &[usize] {
        &self.starts[..self.words]
    }

    /// Normalizes `text` as [`normalize`] does, recording word starts.
    pub fn normalize(&mut self, text: &str, lowercase: bool) {
        if text.is_ascii() {
            self.ascii(text.as_bytes(), lowercase);
            return;
        }
        self.text.clear();
        self.starts.clear();
        let nfc = ComposingNormalizerBorrowed::new_nfc().normalize(text);
        for word in nfc.split_whitespace() {
            if !self.text.is_empty() {
                self.text.push(b' ');
            }
            self.starts.push(self.text.len());
            if lowercase && !word.is_ascii() {
                self.text.extend_from_slice(word.to_lowercase().as_bytes());
            } else if lowercase {
                self.text.extend(word.bytes().map(|b| b.to_ascii_lowercase()));
            } else {
                self.text.extend_from_slice(word.as_bytes());
            }
        }
        (self.len, self.words) = (self.text.len(), self.starts.len());
    }

    /// ASCII (NFC already, its only whitespace ASCII), 32 bytes at a time: each chunk is
    /// mapped (whitespace to a space, lowercased) and a mask of its whitespace taken; a chunk
    /// with no whitespace byte right after another (the common case in prose) is stored whole,
    /// its word starts read off the mask. Any other chunk goes byte by byte: every byte is
    /// written, and the write position advances except on the second and later bytes of a
    /// whitespace run. Leading runs drop (the text starts "after a space"); a trailing run
    /// leaves one space, removed at the end.
    fn ascii(&mut self, bytes: &[u8], lowercase: bool) {
        if self.text.len() < bytes.len() + CHUNK {
            self.text.resize(bytes.len() + CHUNK, 0);
        }
        if self.starts.len() < bytes.len() / 2 + CHUNK + 2 {
            self.starts.resize(bytes.len() / 2 + CHUNK + 2, 0);
        }
        // Plain slices, so the loops keep their pointers and lengths in registers.
        let (out, starts) = (&mut self.text[..], &mut self.starts[..]);
        let (mut w, mut nw, mut prev_space) = (0usize, 0usize, true);
        #[inline(always)]
        fn step(out: &mut [u8], starts: &mut [usize], c: u8, w: &mut usize, nw: &mut usize, prev_space: &mut bool) {
            let space = c == b' ';
            out[*w] = c;
            starts[*nw] = *w;
            *nw += (!space & *prev_space) as usize;
            *w += (!space | !*prev_space) as usize;
            *prev_space = space;
        }
        let mut chunks = bytes.chunks_exact(CHUNK);
        for chunk in &mut chunks {
            let mut mapped = [0u8; CHUNK];
            let space = map_chunk(chunk.try_into().expect("a whole chunk"), lowercase, &mut mapped);
            let after_space = (space << 1) | prev_space as u32;
            if space & after_space == 0 {
                out[w..w + CHUNK].copy_from_slice(&mapped);
                let mut m = !space & after_space;
                while m != 0 {
                    starts[nw] = w + m.trailing_zeros() as usize;
                    nw += 1;
                    m &= m - 1;
                }
                w += CHUNK;
                prev_space = space >> (CHUNK - 1) != 0;
            } else {
                for &c in &mapped {
                    step(out, starts, c, &mut w, &mut nw, &mut prev_space);
                }
            }
        }
        for &b in chunks.remainder() {
            step(out, starts, ascii_map(b, lowercase), &mut w, &mut nw, &mut prev_space);
        }
        if w > 0 && self.text[w - 1] == b' ' {
            w -= 1;
        }
        (self.len, self.words) = (w, nw);
    }

    /// The 64-bit hashes of the word `n`-grams, in text order with repeats (see
    /// [`shingle_hashes`]); empty with fewer than `n` words.
    pub fn shingle_hashes(&mut self, n: usize) -> &[u64] {
        let n = n.max(1);
        self.hashes.clear();
        let (text, starts) = (&self.text[..self.len], &self.starts[..self.words]);
        let words = starts.len();
        if words >= n {
            // An n-gram ends before the space that starts the word after it, or at the end.
            let end = |i: usize| if i < words { starts[i] - 1 } else { text.len() };
            self.hashes.extend((0..=words - n).map(|i| xxh3_64(&text[starts[i]..end(i + n)])));
        }
        &self.hashes
    }
}

/// The exact-duplicate key of a normalized text: xxh3-128.
pub fn exact_key(normalized: impl AsRef<[u8]>) -> u128 {
    xxh3_128(normalized.as_ref())
}

/// The 64-bit hashes of the word `n`-grams of a normalized text (words joined by one space),
/// sorted and deduplicated: the document's shingle set. Empty when it has fewer than `n` words.
pub fn shingles(normalized: &str, n: usize) -> Vec<u64> {
    let mut out = shingle_hashes(normalized, n);
    out.sort_unstable();
    out.dedup();
    out
}

/// `shingles` in text order with repeats: enough for a MinHash signature (a minimum does not
/// care about order or repeats), without the sort.
pub fn shingle_hashes(normalized: &str, n: usize) -> Vec<u64> {
    let mut words = Words::default();
    words.text.extend_from_slice(normalized.as_bytes());
    let mut start = true;
    for (i, b) in normalized.bytes().enumerate() {
        if start && b != b' ' {
            words.starts.push(i);
        }
        start = b == b' ';
    }
    (words.len, words.words) = (words.text.len(), words.starts.len());
    words.shingle_hashes(n).to_vec()
}

/// The quality classifier's feature set of a raw text: its HashingTF indices, sorted, unique.
pub fn feature_set(text: &str, num_features: u32) -> Vec<u64> {
    let mut idx: Vec<u64> = Vec::with_capacity(text.len() / 5 + 1);
    for_each_index(text, num_features, |i| idx.push(i as u64));
    idx.sort_unstable();
    idx.dedup();
    idx
}

/// Exact Jaccard similarity of two sorted, deduplicated sets (1.0 for two empty sets).
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// `java.util.Random`, bit for bit (a 48-bit LCG), for Spark-exact coefficients.
#[derive(Debug, Clone)]
pub struct JavaRandom(u64);

impl JavaRandom {
    const MULT: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;
    pub fn new(seed: i64) -> Self {
        JavaRandom((seed as u64 ^ Self::MULT) & Self::MASK)
    }
    fn next(&mut self, bits: u32) -> i32 {
        self.0 = (self.0.wrapping_mul(Self::MULT).wrapping_add(0xB)) & Self::MASK;
        (self.0 >> (48 - bits)) as i32
    }
    /// `nextInt(bound)`, bound > 0.
    pub fn next_int(&mut self, bound: i32) -> i32 {
        if bound & bound.wrapping_neg() == bound {
            return ((bound as i64 * self.next(31) as i64) >> 31) as i32;
        }
        loop {
            let bits = self.next(31);
            let val = bits % bound;
            if bits.wrapping_sub(val).wrapping_add(bound - 1) >= 0 {
                return val;
            }
        }
    }
}

/// A family of MinHash functions.
#[derive(Debug, Clone)]
pub enum Hasher {
    /// Spark `MinHashLSH`: ((1 + x) * a + b) mod 2038074743 per table.
    Spark { a: Vec<u64>, b: Vec<u64> },
    /// (a * x + b) >> 32 per function (32-bit values), grouped into `bands` of `rows`.
    Universal { a: Vec<u64>, b: Vec<u64>, bands: usize, rows: usize },
}

impl Hasher {
    /// Spark's coefficients for `MinHashLSH(numHashTables = tables, seed = seed)`.
    pub fn spark(tables: usize, seed: i64) -> Hasher {
        let mut r = JavaRandom::new(seed);
        let (mut a, mut b) = (Vec::with_capacity(tables), Vec::with_capacity(tables));
        for _ in 0..tables {
            a.push(1 + r.next_int(SPARK_HASH_PRIME as i32 - 1) as u64);
            b.push(r.next_int(SPARK_HASH_PRIME as i32 - 1) as u64);
        }
        Hasher::Spark { a, b }
    }

    /// `bands x rows` universal hash functions, 64-bit coefficients from xxh3 of (seed, i).
    pub fn universal(bands: usize, rows: usize, seed: u64) -> Hasher {
        let k = bands * rows;
        let draw = |i: usize, which: u64| xxh3_64_with_seed(&(i as u64).to_le_bytes(), seed ^ which);
        let a = (0..k).map(|i| draw(i, 0xA)).collect();
        let b = (0..k).map(|i| draw(i, 0xB)).collect();
        Hasher::Universal { a, b, bands, rows }
    }

    /// Number of hash values in a signature.
    pub fn len(&self) -> usize {
        match self {
            Hasher::Spark { a, .. } | Hasher::Universal { a, .. } => a.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of LSH bands (Spark: one per table).
    pub fn bands(&self) -> usize {
        match self {
            Hasher::Spark { a, .. } => a.len(),
            Hasher::Universal { bands, .. } => *bands,
        }
    }

    /// The signature of a non-empty set (Spark rejects empty vectors; callers skip them).
    pub fn signature(&self, set: &[u64]) -> Vec<u64> {
        match self {
            Hasher::Spark { a, b } => a
                .iter()
                .zip(b)
                .map(|(&a, &b)| set.iter().map(|&x| ((1 + x) * a + b) % SPARK_HASH_PRIME).min().unwrap_or(u64::MAX))
                .collect(),
            Hasher::Universal { a, b, .. } => {
                let mut sig = vec![u32::MAX; a.len()];
                min_hash(a, b, set, &mut sig);
                sig.into_iter().map(u64::from).collect()
            }
        }
    }

    /// The LSH keys of a signature, one per band: Spark's table value itself; or the xxh3 of
    /// the band's `rows` values (seeded by the band index).
    pub fn band_keys(&self, sig: &[u64]) -> Vec<u64> {
        match self {
            Hasher::Spark { .. } => sig.to_vec(),
            Hasher::Universal { bands, rows, .. } => {
                // The signature's bytes once; each band hashes its stretch.
                let bytes: Vec<u8> = sig[..bands * rows].iter().flat_map(|v| v.to_le_bytes()).collect();
                bytes.chunks_exact(8 * rows).enumerate().map(|(j, band)| xxh3_64_with_seed(band, j as u64)).collect()
            }
        }
    }
}

/// `sig[i] = min(sig[i], h_i(x))` over the set, `h_i(x) = (a_i * x + b_i) >> 32` on the low
/// 32 bits of each element (multiply-add-shift, Dietzfelbinger's strongly universal family for
/// 32-bit keys, with 64-bit a_i and b_i). The lanes are independent, so the inner loop
/// vectorizes: 8 lanes a vector with AVX-512, 4 with AVX2, at the level `shards::cpu::simd`
/// chooses at run time. Every path gives the same bits (integer arithmetic).
fn min_hash(a: &[u64], b: &[u64], set: &[u64], sig: &mut [u32]) {
    min_hash_at(shards::cpu::simd(), a, b, set, sig);
}

fn min_hash_at(level: Simd, a: &[u64], b: &[u64], set: &[u64], sig: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if level >= Simd::Avx512 && shards::cpu::detected() >= Simd::Avx512 {
        // SAFETY: AVX-512 F and DQ are present (detected() checked them); nothing else is required.
        unsafe { min_hash_avx512(a, b, set, sig) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if level >= Simd::Avx2 && shards::cpu::detected() >= Simd::Avx2 {
        // SAFETY: AVX2 is present (detected() checked it); the function has no other requirement.
        unsafe { min_hash_avx2(a, b, set, sig) };
        return;
    }
    min_hash_lanes(a, b, set, sig);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn min_hash_avx2(a: &[u64], b: &[u64], set: &[u64], sig: &mut [u32]) {
    use std::arch::x86_64::*;
    // With x < 2^32 and a = a_hi 2^32 + a_lo, bits 32..63 of a x + b (mod 2^64) are
    // hi32(a_lo x + b) + lo32(a_hi x) (mod 2^32): two 32x32->64 products for four lanes each and
    // one 32-bit product for eight, instead of emulating 64-bit products. Eight lanes a vector:
    // `even` holds lanes 0, 2, 4, 6 of the group as 64-bit values, `odd` lanes 1, 3, 5, 7, so that
    // hi32 of even (shifted down) and hi32 of odd (in place) blend into lanes 0..7 in order. The
    // sig of a group stays in a register across the whole set; two groups per pass share the
    // broadcast of each element.
    let n = sig.len().min(a.len()).min(b.len());
    let groups = n / 8;
    // SAFETY (every intrinsic below): AVX2 is enabled for this function; loads and stores are
    // unaligned ones of 8 lanes inside a, b and sig (g < groups = n / 8).
    let load = |g: usize, sig: &[u32]| unsafe {
        let at = |k: usize| a[g * 8 + k];
        let bt = |k: usize| b[g * 8 + k];
        let lo = |x: u64| x as u32 as i64;
        let even = _mm256_setr_epi64x(lo(at(0)), lo(at(2)), lo(at(4)), lo(at(6)));
        let odd = _mm256_setr_epi64x(lo(at(1)), lo(at(3)), lo(at(5)), lo(at(7)));
        let b_even = _mm256_setr_epi64x(bt(0) as i64, bt(2) as i64, bt(4) as i64, bt(6) as i64);
        let b_odd = _mm256_setr_epi64x(bt(1) as i64, bt(3) as i64, bt(5) as i64, bt(7) as i64);
        let hi = |k: usize| (at(k) >> 32) as u32 as i32;
        let a_hi = _mm256_setr_epi32(hi(0), hi(1), hi(2), hi(3), hi(4), hi(5), hi(6), hi(7));
        let s = _mm256_loadu_si256(sig.as_ptr().add(g * 8) as *const __m256i);
        (even, odd, b_even, b_odd, a_hi, s)
    };
    #[inline(always)]
    unsafe fn hash(x64: __m256i, x32: __m256i, l: (__m256i, __m256i, __m256i, __m256i, __m256i)) -> __m256i {
        // SAFETY: called only from min_hash_avx2, where AVX2 is enabled.
        unsafe {
            let pe = _mm256_add_epi64(_mm256_mul_epu32(l.0, x64), l.2);
            let po = _mm256_add_epi64(_mm256_mul_epu32(l.1, x64), l.3);
            let hi = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(pe), po);
            _mm256_add_epi32(hi, _mm256_mullo_epi32(l.4, x32))
        }
    }
    let mut g = 0;
    while g < groups {
        let two = g + 1 < groups;
        let (e0, o0, be0, bo0, h0, mut s0) = load(g, sig);
        let (e1, o1, be1, bo1, h1, mut s1) = if two { load(g + 1, sig) } else { load(g, sig) };
        for &x in set {
            // SAFETY: AVX2 is enabled for this function.
            unsafe {
                let x32 = _mm256_set1_epi32(x as u32 as i32);
                let x64 = _mm256_set1_epi64x(x as u32 as i64);
                s0 = _mm256_min_epu32(s0, hash(x64, x32, (e0, o0, be0, bo0, h0)));
                if two {
                    s1 = _mm256_min_epu32(s1, hash(x64, x32, (e1, o1, be1, bo1, h1)));
                }
            }
        }
        // SAFETY: as for the loads.
        unsafe {
            _mm256_storeu_si256(sig.as_mut_ptr().add(g * 8) as *mut __m256i, s0);
            if two {
                _mm256_storeu_si256(sig.as_mut_ptr().add(g * 8 + 8) as *mut __m256i, s1);
            }
        }
        g += if two { 2 } else { 1 };
    }
    let done = groups * 8;
    min_hash_lanes(&a[done..n], &b[done..n], set, &mut sig[done..n]);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn min_hash_avx512(a: &[u64], b: &[u64], set: &[u64], sig: &mut [u32]) {
    min_hash_lanes(a, b, set, sig);
}

#[inline(always)]
fn min_hash_lanes(a: &[u64], b: &[u64], set: &[u64], sig: &mut [u32]) {
    let n = sig.len().min(a.len()).min(b.len());
    let (a, b, sig) = (&a[..n], &b[..n], &mut sig[..n]);
    for &x in set {
        let x = x as u32 as u64;
        for ((s, &a), &b) in sig.iter_mut().zip(a).zip(b) {
            let h = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
            *s = (*s).min(h);
        }
    }
}

/// The fraction of equal values: the MinHash estimate of Jaccard similarity.
pub fn estimate(a: &[u64], b: &[u64]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// P(candidate | Jaccard s) for `bands` bands of `rows` rows: 1 - (1 - s^rows)^bands.
pub fn candidate_probability(s: f64, bands: usize, rows: usize) -> f64 {
    1.0 - (1.0 - s.powi(rows as i32)).powi(bands as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_nfc_whitespace_case() {
        // "e" + combining acute composes to "é"; tabs, newlines and no-break spaces collapse.
        assert_eq!(normalize("  Cafe\u{301}\t\n DU\u{a0}Monde  ", true), "café du monde");
        assert_eq!(normalize("A  b", false), "A b");
        // The ASCII fast path and the general path agree.
        for t in ["  Mixed\tCASE\n\x0b words\r\n", "", "   ", "a"] {
            let general: String = t.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            assert_eq!(normalize(t, true), general, "{t:?}");
        }
        assert_eq!(exact_key(normalize("a b", true)), exact_key(normalize(" A\n\nB ", true)));
        assert_ne!(exact_key("a b"), exact_key("a c"));
    }

    /// The definition the one-pass normalization must meet, written plainly.
    fn reference(text: &str, lowercase: bool) -> (String, Vec<usize>) {
        let nfc: String = ComposingNormalizerBorrowed::new_nfc().normalize(text).into_owned();
        let words: Vec<String> =
            nfc.split_whitespace().map(|w| if lowercase { w.to_lowercase() } else { w.to_string() }).collect();
        let mut starts = Vec::new();
        let mut at = 0;
        for w in &words {
            starts.push(at);
            at += w.len() + 1;
        }
        (words.join(" "), starts)
    }

    #[test]
    fn one_pass_normalization_matches_its_definition_at_every_chunk_edge() {
        // Seeded random texts over an alphabet heavy in whitespace of every kind (runs that
        // straddle the 32-byte chunks, leading and trailing runs), cased letters, and other
        // bytes; some with non-ASCII letters and spaces (the general path).
        let alphabet: Vec<char> = "aZ  \t\n\r\x0b\x0c.Q,7\x00\x7f".chars().collect();
        // Prose-like: whitespace rare enough that most chunks take the whole-chunk path.
        let prose: Vec<char> = "abcdefgHIJ klmnoPqrstu,.".chars().collect();
        let unicode: Vec<char> = "ÉßΣ\u{a0}\u{3000}e\u{301}İ".chars().collect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut words = Words::default();
        for case in 0..3000 {
            let len = next(if case % 10 == 0 { 400 } else { 100 });
            let chars = if case % 2 == 0 { &alphabet } else { &prose };
            let mut text: String = (0..len).map(|_| chars[next(chars.len())]).collect();
            if case % 7 == 0 {
                for _ in 0..1 + next(3) {
                    let at = text.char_indices().nth(next(text.chars().count() + 1)).map_or(text.len(), |(i, _)| i);
                    text.insert(at, unicode[next(unicode.len())]);
                }
            }
            for lowercase in [false, true] {
                let (want, want_starts) = reference(&text, lowercase);
                // The same buffers from document to document, longer and shorter texts.
                words.normalize(&text, lowercase);
                assert_eq!(std::str::from_utf8(words.text()), Ok(want.as_str()), "{text:?} lowercase {lowercase}");
                assert_eq!(words.starts(), &want_starts[..], "{text:?}");
                assert_eq!(normalize(&text, lowercase), want);
                let n = 1 + next(4);
                assert_eq!(words.shingle_hashes(n), &shingle_hashes(&want, n)[..]);
            }
        }
    }

    #[test]
    fn shingles_of_short_and_repeated_texts() {
        assert!(shingles("one two three four", 5).is_empty());
        assert_eq!(shingles("a b c d e", 5).len(), 1);
        assert_eq!(shingles("a b c d e", 5)[0], xxh3_64(b"a b c d e"));
        // "x y x y x y": 2-grams "x y" and "y x" only.
        assert_eq!(shingles("x y x y x y", 2).len(), 2);
    }

    #[test]
    fn java_random_matches_the_jdk() {
        // Values the JDK 17 gives (jshell): new Random(42).nextInt(), three nextInt(100), and
        // new Random(7).nextInt(2038074742) twice (Spark's coefficient draws).
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next(32), -1_170_105_035);
        let mut r = JavaRandom::new(42);
        assert_eq!([r.next_int(100), r.next_int(100), r.next_int(100)], [30, 63, 48]);
        let mut r = JavaRandom::new(7);
        assert_eq!([r.next_int(2_038_074_742), r.next_int(2_038_074_742)], [1_569_164_236, 1_371_249_164]);
    }

    #[test]
    fn vectorized_and_portable_kernels_agree() {
        // 112 lanes (14 groups of 8), and 7 x 3 = 21 lanes (two groups, one left over, and a
        // remainder of 5 that the scalar loop takes).
        for (bands, rows) in [(14, 8), (7, 3), (1, 1)] {
            kernels_agree(bands, rows);
        }
    }

    fn kernels_agree(bands: usize, rows: usize) {
        let h = Hasher::universal(bands, rows, 3);
        let Hasher::Universal { a, b, .. } = &h else { unreachable!() };
        let set: Vec<u64> = (0..1000u64).map(|i| xxh3_64(&i.to_le_bytes())).collect();
        let mut slow = vec![u32::MAX; a.len()];
        for &x in &set {
            for i in 0..a.len() {
                slow[i] = slow[i].min((a[i].wrapping_mul(x as u32 as u64).wrapping_add(b[i]) >> 32) as u32);
            }
        }
        // Each instruction set this CPU has (an AVX-512 machine runs all three).
        for level in Simd::available() {
            let mut fast = vec![u32::MAX; a.len()];
            min_hash_at(level, a, b, &set, &mut fast);
            assert_eq!(fast, slow, "{level:?}, {bands} x {rows} lanes");
        }
        if shards::cpu::detected() < Simd::Avx512 {
            println!("vectorized_and_portable_kernels_agree: no AVX-512 on this CPU; its path was not run");
        }
    }

    #[test]
    fn identical_sets_collide_everywhere_disjoint_ones_rarely() {
        let h = Hasher::universal(14, 8, 1);
        let a: Vec<u64> = (0..200).collect();
        let b: Vec<u64> = (1000..1200).collect();
        assert_eq!(h.signature(&a), h.signature(&a.clone()));
        assert_eq!(estimate(&h.signature(&a), &h.signature(&a)), 1.0);
        assert!(estimate(&h.signature(&a), &h.signature(&b)) < 0.05);
        let keys = h.band_keys(&h.signature(&a));
        assert_eq!(keys.len(), 14);
    }
}
