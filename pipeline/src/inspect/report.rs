//! `grist report RUN_DIR`: one self-contained HTML file (inline CSS and SVG, no scripts, nothing
//! fetched) describing a run: the stage funnel (documents and tokens kept at each stage), the
//! removal reasons, the quality filter's keep rates and keep curve against the Pareto law,
//! dedup and decontamination figures, the planned and realized mixture, the training curves,
//! a generated sample, and a few documents per source. The same run gives the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use shards::metrics::{self, MetricsLine, StepRecord};
use shards::{DocReader, Loc, Manifest, str_col};

use crate::core::error::StageError;
use crate::core::stage::MANIFEST;
use crate::inspect::summary::{Summary, summarize};
use crate::steps::{Produces, STEPS, blend, tokenize};

type Result<T> = std::result::Result<T, StageError>;

/// Steps whose outputs are documents (and tokenize's), in recipe order: the funnel.
fn doc_steps() -> impl Iterator<Item = &'static str> {
    STEPS.iter().filter(|s| matches!(s.produces, Produces::Documents | Produces::Tokens)).map(|s| s.name)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const COLORS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];

/// A horizontal grouped bar chart: one group per row, one bar per series.
fn bars(rows: &[(String, Vec<f64>)], series: &[&str], unit: &str) -> String {
    let bar_h = 14.0;
    let group_h = bar_h * series.len() as f64 + 10.0;
    let (left, width, top) = (170.0, 640.0, 24.0);
    let h = top + group_h * rows.len() as f64 + 10.0;
    let max = rows.iter().flat_map(|r| r.1.iter().copied()).fold(0.0f64, f64::max).max(1e-9);
    let plot = width - left - 90.0;
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {h}" width="{width}" height="{h}" font-family="sans-serif" font-size="11">"##
    );
    for (i, name) in series.iter().enumerate() {
        let x = left + i as f64 * 150.0;
        let _ = write!(
            s,
            r##"<rect x="{x}" y="4" width="10" height="10" fill="{}"/><text x="{}" y="13">{}</text>"##,
            COLORS[i % COLORS.len()],
            x + 14.0,
            esc(name)
        );
    }
    for (g, (label, values)) in rows.iter().enumerate() {
        let y0 = top + g as f64 * group_h;
        let _ = write!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left - 6.0,
            y0 + group_h / 2.0,
            esc(label)
        );
        for (i, &v) in values.iter().enumerate() {
            let y = y0 + i as f64 * bar_h;
            let w = (plot * v / max).max(if v > 0.0 { 1.0 } else { 0.0 });
            let shown = if v.fract() == 0.0 { thousands(v as u64) } else { format!("{v:.1}") };
            let _ = write!(
                s,
                r##"<rect x="{left}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{shown}{unit}</text>"##,
                bar_h - 2.0,
                COLORS[i % COLORS.len()],
                left + w + 4.0,
                y + bar_h - 4.0
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// The classifier's own figures beside the filter's: held-out AUC (in-sample: the split of its
/// training sources) and the expected keep rates of the `[[quality.reference]]` sets it never saw.
fn classifier_html(dir: &Loc) -> String {
    let Ok(bytes) = dir.join("train_report.json").read() else { return String::new() };
    let Ok(r) = serde_json::from_slice::<crate::steps::quality::train::TrainReport>(&bytes) else {
        return String::new();
    };
    let mut html = format!(
        "<p>Classifier: held-out AUC {:.4} and accuracy {:.4} on its own training sources' held-out split.</p>",
        r.holdout_auc, r.holdout_accuracy
    );
    if !r.reference.is_empty() {
        let rows: Vec<Vec<String>> = r
            .reference
            .iter()
            .map(|x| {
                vec![
                    x.name.clone(),
                    thousands(x.docs as u64),
                    format!("{:.3}", x.mean_score),
                    format!("{:.3}", x.median_score),
                    format!("{:.1}% (alpha {})", 100.0 * x.keep_rate, x.alpha),
                ]
            })
            .collect();
        html += "<h3>Reference sets (never trained on)</h3>";
        html += &table(&["set", "documents", "mean score", "median score", "expected keep rate"], &rows);
    }
    html
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// The first `n` documents of each source in a stage output: (source, id, text).
fn sample_docs(dir: &Loc, n: usize) -> Result<Vec<(String, String, String)>> {
    let m = Manifest::read(&dir.join(MANIFEST))?;
    let mut per: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for f in &m.outputs {
        let r = DocReader::open(&dir.join(&f.path))?;
        for b in r.batches(Some(&["id", "source", "text"]), 1024)? {
            let b = b?;
            let (id, src, text) = (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "text")?);
            for i in 0..b.num_rows() {
                let v = per.entry(src.value(i).to_string()).or_default();
                if v.len() < n {
                    v.push((id.value(i).to_string(), text.value(i).to_string()));
                }
            }
        }
    }
    Ok(per.into_iter().flat_map(|(s, v)| v.into_iter().map(move |(id, t)| (s.clone(), id, t))).collect())
}

/// Writes `RUN_DIR/report.html` (or `out`) and returns its path.
pub fn write_report(run: &Path, out: Option<&Path>) -> Result<std::path::PathBuf> {
    let run_loc = Loc::local(run);
    let present = |stage: &str| run.join(stage).join(MANIFEST).exists();
    let mut summaries: Vec<Summary> = Vec::new();
    for st in doc_steps().filter(|s| present(s)) {
        summaries.push(summarize(&run_loc.join(st))?);
    }
    if summaries.is_empty() && !run.join("train/metrics.jsonl").exists() {
        return Err(StageError::Usage(format!(
            "{}: no stage outputs and no training run there\nhint: run `grist run RECIPE` first",
            run.display()
        )));
    }
    let mut body = String::new();
    let mut nav = Vec::new();
    let mut section = |body: &mut String, id: &str, title: &str, html: String| {
        nav.push(format!(r##"<a href="#{id}">{}</a>"##, esc(title)));
        let _ = write!(body, r##"<section id="{id}"><h2>{}</h2>{html}</section>"##, esc(title));
    };

    // The funnel.
    if !summaries.is_empty() {
        let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
        let mut t = Vec::new();
        for s in &summaries {
            rows.push((s.stage.clone(), vec![s.docs_out as f64, s.docs_ledger as f64]));
            let bytes: u64 = s.sources.values().map(|x| x.text_bytes).sum();
            t.push(vec![
                s.stage.clone(),
                thousands(s.docs_in),
                thousands(s.docs_out),
                thousands(s.docs_ledger),
                format!("{:.1}%", 100.0 * s.docs_out as f64 / s.docs_in.max(1) as f64),
                if s.stage == tokenize::STEP.name { "-".into() } else { thousands(bytes) },
            ]);
        }
        let mut html = bars(&rows, &["documents kept", "removed (ledger)"], "");
        html += &table(&["stage", "documents in", "kept", "removed", "kept %", "text bytes kept"], &t);
        if let Ok(tm) = Manifest::read(&run_loc.join(tokenize::STEP.name).join(MANIFEST)) {
            let tr = tokenize::TokenizeReport::read(&tm)?;
            let _ = write!(
                html,
                "<p>Tokens: {} training and {} validation GPT-2 tokens after tokenization",
                thousands(tr.tokens_train),
                thousands(tr.tokens_val)
            );
            if let Ok(bm) = Manifest::read(&run_loc.join(blend::STEP.name).join(MANIFEST)) {
                let blended: u64 = bm.side.iter().map(|f| f.rows).sum();
                let _ = write!(html, "; {} tokens in the blended training shards", thousands(blended));
            }
            html.push_str(".</p>");
        }
        section(&mut body, "funnel", "Stage funnel", html);

        // Removal reasons per stage and source.
        let mut t = Vec::new();
        for s in &summaries {
            let mut by: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for (src, x) in &s.sources {
                for (reason, n) in &x.removed {
                    *by.entry((reason.as_str(), src.as_str())).or_default() += n;
                }
            }
            for ((reason, src), n) in by {
                t.push(vec![s.stage.clone(), reason.to_string(), src.to_string(), thousands(n)]);
            }
        }
        section(&mut body, "removals", "Removal reasons", table(&["stage", "reason", "source", "documents"], &t));

        // Documents and bytes per source at each stage.
        let mut t = Vec::new();
        for s in summaries.iter().filter(|s| s.stage != tokenize::STEP.name) {
            for (src, x) in &s.sources {
                t.push(vec![
                    s.stage.clone(),
                    src.clone(),
                    thousands(x.docs),
                    thousands(x.text_bytes),
                    format!("{} / {} / {}", x.chars_p50, x.chars_p90, x.chars_max),
                ]);
            }
        }
        section(
            &mut body,
            "sources",
            "Sources by stage",
            table(&["stage", "source", "documents", "text bytes", "chars p50 / p90 / max"], &t),
        );
    }

    // The quality filter.
    if let Ok(m) = Manifest::read(&run_loc.join(crate::steps::quality::filter::STEP.name).join(MANIFEST)) {
        let k = crate::steps::quality::filter::keep_report(&m);
        let rows: Vec<(String, Vec<f64>)> =
            k.sources.iter().map(|(n, s)| (n.clone(), vec![100.0 * s.kept as f64 / s.docs.max(1) as f64])).collect();
        let mut html = format!(
            "<p>GPT-3's rule keeps a document when a Pareto draw exceeds 1 - score{}.</p>",
            k.alpha.map(|a| format!(" (alpha {a:.2})")).unwrap_or_default()
        );
        html += &bars(&rows, &["kept %"], "%");
        let mut curve = Vec::new();
        for bin in 0..10 {
            let (n, kept, expected) = k.sources.values().fold((0, 0, 0.0), |a, s| {
                let d = s.deciles.get(bin).copied().unwrap_or((0, 0, 0.0));
                (a.0 + d.0, a.1 + d.1, a.2 + d.2)
            });
            if n > 0 {
                curve.push((
                    format!("score [{:.1}, {:.1})", bin as f64 / 10.0, (bin + 1) as f64 / 10.0),
                    vec![n as f64, kept as f64, (expected * 10.0).round() / 10.0],
                ));
            }
        }
        if k.alpha.is_some() {
            html += "<h3>Keep curve: kept against what the law (2 - s)^-alpha expects</h3>";
            html += &bars(&curve, &["scored", "kept", "expected"], "");
        }
        html += &classifier_html(&run_loc.join("quality"));
        section(&mut body, "quality", "Quality filter", html);
    }

    // The heuristic filters: removals per rule, and each rule's measured values beside its
    // threshold (users tune thresholds by these).
    if let Ok(m) = Manifest::read(&run_loc.join(crate::steps::filters::STEP.name).join(MANIFEST)) {
        let r = crate::steps::filters::FilterReport::read(&m)?;
        let mut rows = Vec::new();
        let mut t = Vec::new();
        for (f, rules) in &r.filters {
            for (rule, x) in rules {
                let name = format!("{f}.{rule}");
                rows.push((name.clone(), vec![x.removed as f64]));
                let q = |p| x.quantile(p).map_or("-".to_string(), |v| format!("{v:.3}"));
                t.push(vec![
                    name,
                    thousands(x.measured()),
                    thousands(x.removed),
                    x.threshold.map_or("-".into(), |v| v.to_string()),
                    format!("{} / {} / {}", q(0.1), q(0.5), q(0.9)),
                ]);
            }
        }
        let html = format!("<p>{} documents in, {} kept.</p>", thousands(r.docs), thousands(r.kept))
            + &bars(&rows, &["removed"], "")
            + &table(&["rule", "measured", "removed", "threshold", "value p10 / p50 / p90 (bin edges)"], &t);
        section(&mut body, "filters", "Heuristic filters", html);
    }

    // Dedup and decontamination: their counters.
    for (stage, title) in [
        (crate::steps::dedup::FILTER_STEP.name, "Deduplication"),
        (crate::steps::decontaminate::STEP.name, "Decontamination"),
        (crate::steps::decontaminate::HITS_STEP.name, "Benchmark gram hits"),
    ] {
        if let Ok(m) = Manifest::read(&run_loc.join(stage).join(MANIFEST)) {
            let t: Vec<Vec<String>> = m.counters.iter().map(|(k, v)| vec![k.clone(), thousands(*v)]).collect();
            if !t.is_empty() {
                section(&mut body, stage, title, table(&["counter", "value"], &t));
            }
        }
    }

    // The mixture: planned against realized tokens.
    if let Ok(bm) = Manifest::read(&run_loc.join(blend::STEP.name).join(MANIFEST)) {
        let mut rows = Vec::new();
        let mut t = Vec::new();
        for r in blend::MixtureReport::read(&bm)?.sources {
            rows.push((r.name.clone(), vec![r.planned as f64, r.realized as f64]));
            t.push(vec![r.name, format!("{:.1}%", 100.0 * r.share), thousands(r.planned), thousands(r.realized)]);
        }
        let html = bars(&rows, &["planned tokens", "realized tokens"], "")
            + &table(&["source", "weight", "planned tokens", "realized tokens"], &t);
        section(&mut body, "mixture", "Mixture", html);
    }

    // Training.
    let metrics = run.join("train/metrics.jsonl");
    if let Ok(text) = std::fs::read_to_string(&metrics) {
        let lines = metrics::parse(&text, &metrics.display().to_string())?;
        let steps: Vec<&StepRecord> = lines
            .iter()
            .filter_map(|l| match l {
                MetricsLine::Step(s) => Some(s),
                MetricsLine::Eval(_) => None,
            })
            .collect();
        let last_eval = lines.iter().rev().find_map(|l| match l {
            MetricsLine::Eval(e) => Some(e),
            MetricsLine::Step(_) => None,
        });
        let mut html = metrics::loss_chart(&lines);
        let f = |x: Option<f32>| x.map_or("-".into(), |x| format!("{x:.4}"));
        if let (Some(first), Some(last)) = (steps.first(), steps.last()) {
            let mut t = vec![
                vec!["steps".into(), last.step.to_string()],
                vec!["tokens".into(), thousands(last.tokens)],
                vec!["training loss, first step".into(), f(first.loss)],
                vec!["training loss, last step".into(), f(last.loss)],
            ];
            if let Some(v) = last_eval {
                t.push(vec!["validation loss".into(), f(v.val_loss)]);
                for (src, l) in &v.val {
                    t.push(vec![format!("validation loss, {src}"), f(*l)]);
                }
            }
            html += &table(&["measure", "value"], &t);
        }
        if let Ok(generated) = std::fs::read_to_string(run.join("train/generated.txt")) {
            let _ = write!(
                html,
                "<h3>Text generated by the trained model</h3><blockquote>{}</blockquote>",
                esc(generated.trim())
            );
        }
        section(&mut body, "training", "Training", html);
    }

    // The ablation (`grist ablate`): every arm's loss curve, and the held-out table.
    let ablate = run.join("ablate/ablate.json");
    if let Ok(bytes) = std::fs::read(&ablate) {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| StageError::Usage(format!("{}: not JSON: {e}", ablate.display())))?;
        let arms = v["arms"].as_array().cloned().unwrap_or_default();
        let series: Vec<(String, Vec<(f64, f64)>)> = arms
            .iter()
            .map(|a| {
                let pts = a["curve"].as_array().into_iter().flatten();
                let pts = pts.filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?))).collect();
                (a["name"].as_str().unwrap_or("?").to_string(), pts)
            })
            .collect();
        let mut html = shards::metrics::curves_chart(&series);
        let t: Vec<Vec<String>> = arms
            .iter()
            .map(|a| {
                vec![
                    a["name"].as_str().unwrap_or("?").to_string(),
                    a["about"].as_str().unwrap_or("").to_string(),
                    thousands(a["tokens_available"].as_u64().unwrap_or(0)),
                    thousands(a["tokens_trained"].as_u64().unwrap_or(0)),
                    a["last_loss"].as_f64().map_or("-".into(), |l| format!("{l:.3}")),
                ]
            })
            .collect();
        html += &table(&["arm", "stages", "tokens available", "tokens trained", "final loss"], &t);
        let ci = |x: &serde_json::Value, signed: bool| match (x["value"].as_f64(), x["lo"].as_f64(), x["hi"].as_f64()) {
            (Some(v), Some(lo), Some(hi)) if signed => format!("{v:+.4} [{lo:+.4}, {hi:+.4}]"),
            (Some(v), Some(lo), Some(hi)) => format!("{v:.4} [{lo:.4}, {hi:.4}]"),
            _ => "-".into(),
        };
        for set in v["sets"].as_array().into_iter().flatten() {
            let name = set[0].as_str().unwrap_or("?");
            let rows: Vec<Vec<String>> = set[1]
                .as_array()
                .into_iter()
                .flatten()
                .map(|sc| {
                    let called = match sc["called"].as_bool() {
                        Some(true) => " (called)",
                        _ => "",
                    };
                    vec![
                        sc["arm"].as_str().unwrap_or("?").to_string(),
                        ci(&sc["loss"], false),
                        ci(&sc["bits_per_byte"], false),
                        format!("{}{called}", ci(&sc["vs_first"], true)),
                    ]
                })
                .collect();
            let _ = write!(html, "<h3>held-out {}</h3>", esc(name));
            html += &table(&["arm", "loss [95% CI]", "bits/byte [95% CI]", "vs the first arm [95% CI, paired]"], &rows);
        }
        section(&mut body, "ablation", "Ablation", html);
    }

    // Documents.
    if let Some(last) = summaries.iter().rev().find(|s| s.stage != tokenize::STEP.name).or(summaries.last()) {
        let docs = sample_docs(&run_loc.join(&last.stage), 2)?;
        let mut html = format!("<p>The first documents of each source in the {} output.</p>", esc(&last.stage));
        for (src, id, text) in docs {
            let cut: String = text.chars().take(700).collect();
            let more = if cut.len() < text.len() { " ..." } else { "" };
            let _ = write!(html, "<h3>{} <small>{}</small></h3><pre>{}{more}</pre>", esc(&src), esc(&id), esc(&cut));
        }
        section(&mut body, "documents", "Sample documents", html);
    }

    let title = format!("grist report: {}", run.display());
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; color: #222; padding: 0 1em; }}
nav a {{ margin-right: 1em; }} section {{ margin-top: 2em; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; }} th {{ background: #f4f4f4; }}
td:not(:first-child) {{ font-variant-numeric: tabular-nums; }}
pre {{ white-space: pre-wrap; background: #f8f8f8; padding: 8px; font-size: 12px; border-left: 3px solid #ccc; }}
blockquote {{ background: #f8f8f8; padding: 8px 12px; border-left: 3px solid #1f77b4; margin: 0.5em 0; }}
</style></head><body>
<h1>{t}</h1>
<nav>{nav}</nav>
{body}
</body></html>
"#,
        t = esc(&title),
        nav = nav.join(" "),
    );
    let path = out.map(Path::to_path_buf).unwrap_or_else(|| run.join("report.html"));
    Loc::local(&path).write_atomic(html.as_bytes())?;
    Ok(path)
}
