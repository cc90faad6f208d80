//! MinHash and LSH against Spark and against their laws:
//! - `gpt3` mode equals Spark ML's MinHashLSH(numHashTables = 10, seed = 42) hash for hash
//!   (`golden/spark_minhash.json`, from `scripts/spark-minhash-golden.py`, Spark 4.0.1), and
//!   its approxSimilarityJoin pairs;
//! - the MinHash estimate of Jaccard is within the binomial bound of the exact value;
//! - the candidate rate of pairs with known similarity follows 1 - (1 - s^r)^b.
#![allow(clippy::unwrap_used)]

use pipeline::core::rng::DocRng;
use pipeline::steps::dedup::minhash::{Hasher, candidate_probability, estimate, feature_set, jaccard};
use pipeline::text::features::DEFAULT_NUM_FEATURES;

#[test]
fn gpt3_mode_equals_spark_minhashlsh() {
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden/spark_minhash.json")).unwrap();
    let h = Hasher::spark(10, 42);
    let cases = golden["cases"].as_array().unwrap();
    let sets: Vec<Vec<u64>> =
        cases.iter().map(|c| feature_set(c["text"].as_str().unwrap(), DEFAULT_NUM_FEATURES)).collect();
    for (c, set) in cases.iter().zip(&sets) {
        let want: Vec<u64> = c["hashes"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(h.signature(set), want, "{}", c["text"]);
    }
    // approxSimilarityJoin at distance 0.6: candidates (any equal table) verified by exact
    // Jaccard distance on the feature sets.
    let threshold = golden["threshold"].as_f64().unwrap();
    let mut ours = Vec::new();
    for a in 0..sets.len() {
        for b in a + 1..sets.len() {
            let (sa, sb) = (h.signature(&sets[a]), h.signature(&sets[b]));
            let dist = 1.0 - jaccard(&sets[a], &sets[b]);
            if sa.iter().zip(&sb).any(|(x, y)| x == y) && dist < threshold {
                ours.push((a as u64, b as u64, dist));
            }
        }
    }
    let want: Vec<(u64, u64, f64)> = golden["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap(), p[2].as_f64().unwrap()))
        .collect();
    assert_eq!(ours.len(), want.len(), "{ours:?} vs {want:?}");
    for (o, w) in ours.iter().zip(&want) {
        assert_eq!((o.0, o.1), (w.0, w.1));
        assert!((o.2 - w.2).abs() < 1e-12);
    }
}

/// Two sets of `n` elements sharing exactly `shared` of them: Jaccard shared / (2n - shared).
fn pair(seed: u64, n: u64, shared: u64) -> (Vec<u64>, Vec<u64>) {
    let mut r = DocRng::new(seed, "minhash-test", "pair");
    let common: Vec<u64> = (0..shared).map(|_| r.next_u64()).collect();
    let mut a = common.clone();
    let mut b = common;
    a.extend((shared..n).map(|_| r.next_u64()));
    b.extend((shared..n).map(|_| r.next_u64()));
    a.sort_unstable();
    b.sort_unstable();
    (a, b)
}

#[test]
fn estimates_stay_within_the_binomial_bound() {
    // k = 112 hashes: the estimate is Binomial(k, J) / k, sd sqrt(J (1 - J) / k).
    let h = Hasher::universal(14, 8, 99);
    let k = h.len() as f64;
    let mut outside_3sd = 0;
    let trials = 300;
    for t in 0..trials {
        let shared = 20 + (t as u64 * 7) % 180;
        let (a, b) = pair(t as u64, 200, shared);
        let j = jaccard(&a, &b);
        let est = estimate(&h.signature(&a), &h.signature(&b));
        let sd = (j * (1.0 - j) / k).sqrt();
        assert!((est - j).abs() <= 5.0 * sd + 1e-9, "J {j}, estimate {est}");
        if (est - j).abs() > 3.0 * sd {
            outside_3sd += 1;
        }
    }
    // P(|Z| > 3) = 0.27%: allow a few.
    assert!(outside_3sd <= 5, "{outside_3sd} of {trials} estimates beyond 3 sd");
}

#[test]
fn candidate_rate_follows_the_s_curve() {
    let (bands, rows) = (14, 8);
    let pairs = 400;
    for (shared, n) in [(100u64, 200u64), (150, 200), (175, 200), (190, 200)] {
        let s = shared as f64 / (2 * n - shared) as f64;
        let p = candidate_probability(s, bands, rows);
        let mut hits = 0;
        for t in 0..pairs {
            // A fresh hash family per pair: the law is over the random choice of functions.
            let h = Hasher::universal(bands, rows, 1000 + t);
            let (a, b) = pair(t, n, shared);
            let (ka, kb) = (h.band_keys(&h.signature(&a)), h.band_keys(&h.signature(&b)));
            if ka.iter().zip(&kb).any(|(x, y)| x == y) {
                hits += 1;
            }
        }
        let rate = hits as f64 / pairs as f64;
        let se = (p * (1.0 - p) / pairs as f64).sqrt();
        assert!((rate - p).abs() <= 4.0 * se + 0.01, "s {s:.3}: candidate rate {rate}, law {p:.3}");
    }
}

/// The `text` of every line of a JSON-lines file (gzip).
fn lines(path: &std::path::Path) -> Vec<String> {
    use std::io::BufRead;
    let f = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()));
    f.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            v["text"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

#[test]
fn natural_near_duplicates_of_a_real_crawl() {
    let Ok(data) = std::env::var("GRIST_TEST_DATA") else {
        println!("skipping natural_near_duplicates_of_a_real_crawl: GRIST_TEST_DATA is not set");
        return;
    };
    use pipeline::steps::dedup::minhash::{normalize, shingles};
    let texts = lines(&std::path::Path::new(&data).join("web/cc2019-30.jsonl.gz"));
    let sets: Vec<Vec<u64>> = texts.iter().map(|t| shingles(&normalize(t, true), 5)).collect();
    let without = sets.iter().filter(|s| s.is_empty()).count();
    // Exact all-pairs Jaccard >= 0.8 among documents with a 5-gram.
    let mut exact = Vec::new();
    for a in 0..sets.len() {
        for b in a + 1..sets.len() {
            if !sets[a].is_empty() && !sets[b].is_empty() && jaccard(&sets[a], &sets[b]) >= 0.8 {
                exact.push((a, b));
            }
        }
    }
    assert_eq!(exact, [(12, 13), (240, 241), (240, 242), (241, 242)], "{without} documents without a 5-gram");
    assert_eq!(without, 44);
    // LSH (14 bands x 8 rows) + verification finds exactly these.
    let h = Hasher::universal(14, 8, 5);
    let keys: Vec<Option<Vec<u64>>> =
        sets.iter().map(|s| (!s.is_empty()).then(|| h.band_keys(&h.signature(s)))).collect();
    let mut found = Vec::new();
    for a in 0..sets.len() {
        for b in a + 1..sets.len() {
            if let (Some(ka), Some(kb)) = (&keys[a], &keys[b])
                && ka.iter().zip(kb).any(|(x, y)| x == y)
                && jaccard(&sets[a], &sets[b]) >= 0.8
            {
                found.push((a, b));
            }
        }
    }
    assert_eq!(found, exact);
}

#[test]
fn injected_near_duplicates_in_real_text_are_found() {
    let Ok(data) = std::env::var("GRIST_TEST_DATA") else {
        println!("skipping injected_near_duplicates_in_real_text_are_found: GRIST_TEST_DATA is not set");
        return;
    };
    use pipeline::steps::dedup::minhash::{normalize, shingles};
    // Real documents with at least 100 words; for each, an edited copy: a word changed every
    // k words, a sentence inserted, or its paragraphs (or halves) swapped.
    let texts: Vec<String> = lines(&std::path::Path::new(&data).join("web/cc2019-30.jsonl.gz"))
        .into_iter()
        .filter(|t| t.split_whitespace().count() >= 100)
        .take(300)
        .collect();
    let mut docs: Vec<String> = texts.clone();
    for (i, t) in texts.iter().enumerate() {
        let mut r = DocRng::new(11, "inject", &i.to_string());
        let words: Vec<&str> = t.split_whitespace().collect();
        let copy = match i % 4 {
            0 => {
                let k = 40 + r.below(60) as usize;
                words
                    .iter()
                    .enumerate()
                    .map(|(j, w)| if j % k == k / 2 { "EDITED" } else { w })
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            1 => {
                let at = r.below(words.len() as u64) as usize;
                let mut w = words.clone();
                w.insert(at, "This sentence was inserted by a scraper.");
                w.join(" ")
            }
            2 => {
                let paras: Vec<&str> = t.split("\n").collect();
                if paras.len() > 1 {
                    let mut p = paras.clone();
                    p.rotate_left(1);
                    p.join("\n")
                } else {
                    let (a, b) = words.split_at(words.len() / 2);
                    [b, a].concat().join(" ")
                }
            }
            _ => {
                // A heavier edit: every 8th word changed (true Jaccard well under 0.8).
                words
                    .iter()
                    .enumerate()
                    .map(|(j, w)| if j % 8 == 3 { "CHANGED" } else { w })
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        docs.push(copy);
    }
    let sets: Vec<Vec<u64>> = docs.iter().map(|t| shingles(&normalize(t, true), 5)).collect();
    let h = Hasher::universal(14, 8, 42);
    let keys: Vec<Vec<u64>> = sets.iter().map(|s| h.band_keys(&h.signature(s))).collect();
    let (mut truth, mut found, mut found_true) = (0usize, 0usize, 0usize);
    for a in 0..docs.len() {
        for b in a + 1..docs.len() {
            let j = jaccard(&sets[a], &sets[b]);
            let candidate = keys[a].iter().zip(&keys[b]).any(|(x, y)| x == y);
            let verified = candidate && j >= 0.8;
            truth += (j >= 0.8) as usize;
            found += verified as usize;
            found_true += (verified && j >= 0.8) as usize;
        }
    }
    let recall = found_true as f64 / truth as f64;
    let precision = found_true as f64 / found.max(1) as f64;
    println!("injected near-duplicates: {truth} pairs at Jaccard >= 0.8, recall {recall:.4}, precision {precision:.4}");
    assert!(truth >= 200, "{truth} true pairs");
    assert!(recall >= 0.95, "recall {recall} ({found_true} of {truth})");
    assert!(precision >= 0.99, "precision {precision}");
}
