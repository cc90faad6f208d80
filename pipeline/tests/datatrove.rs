//! grist's heuristic filters against datatrove itself, document by document. The truth file is
//! written by `scripts/datatrove-truth.py` (datatrove and spaCy from PyPI, in the venv that
//! `scripts/check-datatrove.sh` creates) for a JSONL of texts; this test reads it from
//! `GRIST_DATATROVE_TRUTH` and is skipped without it (`just check-datatrove` runs it).

use serde_json::Value;

fn truth() -> Option<Vec<Value>> {
    let Ok(path) = std::env::var("GRIST_DATATROVE_TRUTH") else {
        eprintln!("GRIST_DATATROVE_TRUTH unset: skipped (run `just check-datatrove`)");
        return None;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Some(text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}"))).collect())
}

fn input_texts() -> Vec<(String, String)> {
    let path = std::env::var("GRIST_DATATROVE_INPUT").expect("GRIST_DATATROVE_INPUT with GRIST_DATATROVE_TRUTH");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}"));
            (v["id"].as_str().unwrap_or_default().to_string(), v["text"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn words_and_sentences_equal_spacys() {
    let Some(truth) = truth() else { return };
    let texts = input_texts();
    assert_eq!(texts.len(), truth.len());
    let en = pipeline::text::spacy::english();
    let mut bad = 0;
    for ((id, text), t) in texts.iter().zip(&truth) {
        let words = en.words(text);
        let want: Vec<&str> =
            t["words"].as_array().expect("words").iter().map(|w| w.as_str().unwrap_or_default()).collect();
        if words != want {
            bad += 1;
            let i = words.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(words.len().min(want.len()));
            eprintln!(
                "{id}: words differ at {i}: ours {:?} spaCy {:?}",
                &words[i.saturating_sub(3)..(i + 4).min(words.len())],
                &want[i.saturating_sub(3)..(i + 4).min(want.len())]
            );
        }
        let n = if text.is_empty() { 0 } else { en.sentence_count(text) };
        if n as u64 != t["n_sentences"].as_u64().unwrap_or(u64::MAX) {
            bad += 1;
            eprintln!("{id}: {n} sentences, spaCy {}", t["n_sentences"]);
        }
    }
    assert_eq!(bad, 0, "{bad} differences in {} documents", texts.len());
}

/// datatrove's verdict as the truth file has it: `true`, or `[false, reason]`.
fn dt_reason(v: &Value) -> Option<String> {
    match v {
        Value::Bool(true) => None,
        Value::Array(a) => Some(a.get(1).and_then(|r| r.as_str()).unwrap_or("?").to_string()),
        other => Some(format!("unexpected {other}")),
    }
}

#[test]
fn every_filter_decides_as_datatrove() {
    use pipeline::steps::filters::rules::*;
    let Some(truth) = truth() else { return };
    let texts = input_texts();
    assert_eq!(texts.len(), truth.len());
    let c4_fineweb = C4Quality { filter_no_terminal_punct: false, ..C4Quality::default() };
    let mut bad = 0;
    let mut removed = std::collections::BTreeMap::<String, usize>::new();
    for ((id, text), t) in texts.iter().zip(&truth) {
        let seen = &mut Measured::new();
        let mut c4_text = |c4: &C4Quality| {
            let mut d = Doc::new(text);
            let r = c4.check(&mut d, seen, &mut LinesRemoved::default(), false).map(|r| r.rule);
            (r, d.text.into_owned())
        };
        let (c4_r, c4_t) = c4_text(&C4Quality::default());
        let (c4f_r, c4f_t) = c4_text(&c4_fineweb);
        let ours = [
            ("gopher_quality", GopherQuality::default().check(&mut Doc::new(text), seen).map(|r| r.rule)),
            ("gopher_repetition", GopherRepetition::default().check(&mut Doc::new(text), seen).map(|r| r.rule)),
            ("c4_quality", c4_r),
            ("c4_quality_fineweb", c4f_r),
            // datatrove's reason is "< 3 paragraphs"; ours is snake_case.
            (
                "c4_paragraph",
                C4Paragraph::default().check(&mut Doc::new(text), seen).map(|_| "< 3 paragraphs".to_string()),
            ),
            ("fineweb_quality", FineWebQuality::default().check(&mut Doc::new(text), seen).map(|r| r.rule)),
        ];
        for (name, r) in ours {
            let want = dt_reason(&t[name]);
            if r != want {
                bad += 1;
                eprintln!("{id} {name}: ours {r:?}, datatrove {want:?}");
            }
            if let Some(r) = r {
                *removed.entry(format!("{name}.{r}")).or_default() += 1;
            }
        }
        // PIIFormatter (a fresh one per text): the same text out.
        if let Some(want) = t["pii"].as_str() {
            let (ours, _) = pipeline::steps::filters::pii::Pii::default().apply(text);
            if ours.as_deref().unwrap_or(text) != want {
                bad += 1;
                eprintln!("{id} pii: texts differ");
            }
        }
        for (name, ours) in [("c4_quality", &c4_t), ("c4_quality_fineweb", &c4f_t)] {
            let want = t[format!("{name}_text")].as_str().unwrap_or_default();
            if t[name] == Value::Bool(true) && ours != want {
                bad += 1;
                eprintln!("{id} {name}: rewritten text differs");
            }
        }
    }
    eprintln!("{} documents; removals by filter and rule: {removed:?}", texts.len());
    assert_eq!(bad, 0, "{bad} differences in {} documents", texts.len());
}
