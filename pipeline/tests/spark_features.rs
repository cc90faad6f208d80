//! grist's Tokenizer + HashingTF against Spark's own output: `golden/spark_hashingtf.json` was
//! produced by Spark 4.3.0 (`scripts/spark-golden.py`, local mode) on strings chosen for the
//! edge cases: repeated, leading and trailing whitespace, \x0B and \x0C, a no-break space,
//! accented Latin, final sigma, Turkish dotted I, CJK, Hangul, emoji with joiners, "" and "   ".
//! The same file holds Spark's `NGram(2)`, and HashingTF over `concat(tokens, bigrams)` and
//! `concat(tokens, bigrams, trigrams)`: the terms `quality.ngrams = 2` and `3` hash.
#![allow(clippy::unwrap_used)]

use pipeline::text::features::{features, for_each_token, hashing_tf, spark_ngrams, spark_tokenize};

#[test]
fn tokens_and_indices_match_spark() {
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden/spark_hashingtf.json")).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want_tokens: Vec<&str> = c["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let tokens = spark_tokenize(text);
        assert_eq!(tokens, want_tokens, "tokens of {text:?}");

        let v = hashing_tf(&tokens, 1 << 18, false);
        let want: Vec<(u32, f32)> = c["indices"]
            .as_array()
            .unwrap()
            .iter()
            .zip(c["values"].as_array().unwrap())
            .map(|(i, x)| (i.as_u64().unwrap() as u32, x.as_f64().unwrap() as f32))
            .collect();
        assert_eq!(v, want, "HashingTF of {text:?}");
        // The fused path that training and scoring use gives Spark's vector too.
        assert_eq!(features(text, 1 << 18, false, 1), want, "features() of {text:?}");
        let mut streamed: Vec<String> = Vec::new();
        for_each_token(text, |t| streamed.push(String::from_utf8(t.to_vec()).unwrap()));
        assert_eq!(streamed, want_tokens, "for_each_token of {text:?}");

        let b: Vec<u32> = hashing_tf(&tokens, 1 << 10, true).iter().map(|x| x.0).collect();
        let want_b: Vec<u32> =
            c["binary_1024_indices"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
        assert_eq!(b, want_b, "binary HashingTF(1024) of {text:?}");
        let fb: Vec<u32> = features(text, 1 << 10, true, 1).iter().map(|x| x.0).collect();
        assert_eq!(fb, want_b, "binary features() of {text:?}");

        let want_bigrams: Vec<&str> = c["bigrams"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(spark_ngrams(&tokens, 2), want_bigrams, "NGram(2) of {text:?}");
        for n in [2u32, 3] {
            let want: Vec<(u32, f32)> = c[format!("ngrams{n}_indices")]
                .as_array()
                .unwrap()
                .iter()
                .zip(c[format!("ngrams{n}_values")].as_array().unwrap())
                .map(|(i, x)| (i.as_u64().unwrap() as u32, x.as_f64().unwrap() as f32))
                .collect();
            assert_eq!(features(text, 1 << 18, false, n), want, "HashingTF of the {n}-gram terms of {text:?}");
        }
    }
}
