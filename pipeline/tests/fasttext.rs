//! grist's fastText reader and predictor against the `fasttext` Python package, text by text:
//! the same labels in the same order and the same probabilities (within 1e-5), for a model the
//! user gives (`lid.176.ftz` from PyPI in `just check-datatrove`). Reads `GRIST_FASTTEXT_MODEL`,
//! `GRIST_DATATROVE_INPUT` (JSON lines of texts) and `GRIST_FASTTEXT_TRUTH` (the package's
//! predictions, `scripts/datatrove_filters.py lid`); skipped without them.
#![allow(clippy::unwrap_used)]

use serde_json::Value;

#[test]
fn predictions_equal_the_fasttext_packages() {
    let (Ok(model), Ok(input), Ok(truth)) = (
        std::env::var("GRIST_FASTTEXT_MODEL"),
        std::env::var("GRIST_DATATROVE_INPUT"),
        std::env::var("GRIST_FASTTEXT_TRUTH"),
    ) else {
        eprintln!(
            "GRIST_FASTTEXT_MODEL / GRIST_DATATROVE_INPUT / GRIST_FASTTEXT_TRUTH unset: skipped (run `just check-datatrove`)"
        );
        return;
    };
    let m = pipeline::text::fasttext::Model::open(std::path::Path::new(&model)).unwrap();
    let texts = std::fs::read_to_string(&input).unwrap();
    let truth = std::fs::read_to_string(&truth).unwrap();
    let (mut n, mut bad, mut worst) = (0, 0, 0f32);
    for (t, w) in texts.lines().filter(|l| !l.trim().is_empty()).zip(truth.lines()) {
        let (t, w): (Value, Value) = (serde_json::from_str(t).unwrap(), serde_json::from_str(w).unwrap());
        assert_eq!(t["id"], w["id"]);
        let text = t["text"].as_str().unwrap().replace('\n', " ");
        let ours = m.predict(&text, 0);
        let labels: Vec<&str> = w["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        let scores: Vec<f32> = w["scores"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap() as f32).collect();
        let our_labels: Vec<&str> = ours.iter().map(|p| p.0).collect();
        n += 1;
        if our_labels.first() != labels.first() || our_labels.len() != labels.len() {
            bad += 1;
            eprintln!(
                "{}: ours {:?} fasttext {:?}",
                t["id"],
                &ours[..ours.len().min(3)],
                &labels[..labels.len().min(3)]
            );
            continue;
        }
        for (o, (l, s)) in ours.iter().zip(labels.iter().zip(&scores)) {
            if o.0 != *l && (o.1 - s).abs() > 1e-6 {
                bad += 1;
                eprintln!("{}: label order differs at {l}", t["id"]);
                break;
            }
            worst = worst.max((o.1 - s).abs());
        }
    }
    eprintln!("{n} texts; largest probability difference {worst:e}");
    assert!(n > 0);
    assert_eq!(bad, 0, "{bad} of {n} texts differ");
    assert!(worst <= 1e-5, "largest probability difference {worst}");
}
