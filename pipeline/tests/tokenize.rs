//! GPT-2 tokens equal OpenAI's: `golden/gpt2_tokens.json` holds ids that Python tiktoken 0.14
//! gave (loaded with the rank file tiktoken-rs compiles in; `scripts/tiktoken-golden.py`) for
//! edge cases (U+FEFF, emoji with joiners, CRLF, long whitespace runs, the end-of-text marker as
//! plain text, contractions, ...) and for real texts in ../shared/data (ids only).
#![allow(clippy::unwrap_used)]

use std::io::BufRead;

use pipeline::steps::tokenize::gpt2_tokens;

fn golden() -> serde_json::Value {
    serde_json::from_str(include_str!("golden/gpt2_tokens.json")).unwrap()
}

/// `GRIST_TEST_DATA`, or `None` after saying the test is skipped.
fn data(test: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("GRIST_TEST_DATA");
    if dir.is_none() {
        println!("skipping {test}: GRIST_TEST_DATA is not set");
    }
    dir.map(std::path::PathBuf::from)
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn edge_cases_match_tiktoken() {
    let g = golden();
    for c in g["cases"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        assert_eq!(gpt2_tokens(text), ids(&c["ids"]), "{text:?}");
    }
}

#[test]
fn real_texts_match_tiktoken() {
    let Some(data) = data("real_texts_match_tiktoken") else { return };
    let g = golden();
    for r in g["real"].as_array().unwrap() {
        let file = r["file"].as_str().unwrap();
        let text = if let Some(line) = r["line"].as_u64() {
            let f = flate2::read::MultiGzDecoder::new(std::fs::File::open(data.join(file)).unwrap());
            let l = std::io::BufReader::new(f).lines().nth(line as usize).unwrap().unwrap();
            serde_json::from_str::<serde_json::Value>(&l).unwrap()["text"].as_str().unwrap().to_string()
        } else {
            let chars = r["chars"].as_u64().unwrap() as usize;
            std::fs::read_to_string(data.join(file)).unwrap().chars().take(chars).collect()
        };
        assert_eq!(gpt2_tokens(&text), ids(&r["ids"]), "{file} {}", r["line"]);
    }
}

/// Every text of the real data (web JSON lines in many languages, the State of the Union
/// addresses, benchmark questions) tokenized by grist's encoder and by tiktoken-rs (the oracle
/// the golden ids above also agree with): identical ids, document by document.
#[test]
fn every_real_document_matches_tiktoken_rs() {
    let Some(data) = data("every_real_document_matches_tiktoken_rs") else { return };
    let mut texts: Vec<(String, String)> = Vec::new();
    for file in ["web/cc2019-30.jsonl.gz", "web/cc_en_head-0091.jsonl.gz", "web/cc_en_head-0174.jsonl.gz"] {
        let f = flate2::read::MultiGzDecoder::new(std::fs::File::open(data.join(file)).unwrap());
        for (n, l) in std::io::BufReader::new(f).lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            texts.push((format!("{file}:{n}"), v["text"].as_str().unwrap().to_string()));
        }
    }
    for l in std::fs::read_to_string(data.join("benchmarks/gsm8k-test.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        texts.push(("gsm8k".into(), format!("{}\n{}", v["question"].as_str().unwrap(), v["answer"].as_str().unwrap())));
    }
    for e in std::fs::read_dir(data.join("curated/sotu")).unwrap() {
        let p = e.unwrap().path();
        texts.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
    }
    assert!(texts.len() > 1000, "{} texts", texts.len());
    let core = tiktoken_rs::r50k_base_singleton();
    for (name, t) in &texts {
        assert_eq!(gpt2_tokens(t), core.encode_ordinary(t), "{name}");
    }
}
