//! A training run's `metrics.jsonl`, typed: one JSON object a line, a [`StepRecord`] after
//! every optimizer step and an [`EvalRecord`] after every evaluation (format in
//! `shards/README.md`); and its loss curve as a self-contained SVG. The trainer writes these
//! files; `grist inspect` and the HTML report read them through the same types.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::error::{At, ShardError};

/// One optimizer step. Fields in alphabetical order, the order of the file's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// Sequences in the step's batch (GPT-3's ramp changes it).
    pub batch: usize,
    /// Data parallel: seconds of the step this rank (rank 0) spent in collectives, waiting for
    /// the other ranks included; absent for one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_s: Option<f64>,
    /// Seconds since the run (or its resumption) started.
    pub elapsed_s: f64,
    /// Gradient norm before clipping (`null`, read as `None`, when it was not finite).
    pub grad_norm: Option<f32>,
    /// Mean training loss of the step in nats per token (`null` when it was not finite).
    pub loss: Option<f32>,
    pub lr: f32,
    /// Model FLOPs utilization against the backend's measured peak.
    pub mfu: f64,
    /// Steps taken (1-based) and tokens trained on, this step included.
    pub step: u64,
    pub tokens: u64,
    pub tokens_per_s: f64,
}

/// One evaluation on the validation sets. Fields in alphabetical order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRecord {
    pub step: u64,
    pub tokens: u64,
    /// Mean loss per validation set (by source, or `val`); `null` when not finite.
    pub val: BTreeMap<String, Option<f32>>,
    /// Mean over every set, weighted by its tokens; `null` when not finite.
    pub val_loss: Option<f32>,
    pub val_tokens: usize,
}

/// A line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricsLine {
    Step(StepRecord),
    Eval(EvalRecord),
}

impl MetricsLine {
    /// The step the line was written at.
    pub fn step(&self) -> u64 {
        match self {
            MetricsLine::Step(s) => s.step,
            MetricsLine::Eval(e) => e.step,
        }
    }
}

/// Every line of a `metrics.jsonl` text (`path` names it in errors): a line that is not a
/// step or an evaluation record is an error naming its line number.
pub fn parse(text: &str, path: &str) -> Result<Vec<MetricsLine>, ShardError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                ShardError::invalid(At::file(format!("{path}:{}", i + 1)), format!("not a metrics record: {e}"))
            })
        })
        .collect()
}

/// The frame of a loss chart: a 640 x 360 SVG with loss against tokens, its scales fitted to the
/// finite points given (the loss axis on whole numbers), grid lines and axis labels.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    xmax: f64,
    ymin: f64,
    ymax: f64,
}

impl Frame {
    fn new<'a>(points: impl Iterator<Item = &'a (f64, f64)>, right: f64) -> Frame {
        let all: Vec<&(f64, f64)> = points.filter(|p| p.1.is_finite()).collect();
        let xmax = all.iter().map(|p| p.0).fold(1.0f64, f64::max);
        let ymax = all.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        let ymin = all.iter().map(|p| p.1).fold(f64::MAX, f64::min).min(ymax);
        let (ymin, ymax) =
            if all.is_empty() { (0.0, 1.0) } else { (ymin.floor().max(0.0), ymax.ceil().max(ymin.floor() + 1.0)) };
        Frame { w: 640.0, h: 360.0, left: 56.0, right, top: 28.0, bottom: 40.0, xmax, ymin, ymax }
    }

    fn px(&self, x: f64) -> f64 {
        self.left + (self.w - self.left - self.right) * x / self.xmax
    }

    fn py(&self, y: f64) -> f64 {
        self.top + (self.h - self.top - self.bottom) * (1.0 - (y - self.ymin) / (self.ymax - self.ymin))
    }

    /// The finite points as a polyline's `points`.
    fn points(&self, pts: &[(f64, f64)]) -> String {
        let v: Vec<String> = pts
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect();
        v.join(" ")
    }

    /// The opening of the SVG: background, title, grid and labels (no closing tag).
    fn open(&self, title: &str) -> String {
        let (w, h, left, right, bottom) = (self.w, self.h, self.left, self.right, self.bottom);
        let mut s = format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="11"><rect width="{w}" height="{h}" fill="white"/><text x="{left}" y="16" font-size="13">{title}</text>"##
        );
        for i in 0..=4 {
            let y = self.ymin + (self.ymax - self.ymin) * i as f64 / 4.0;
            let _ = write!(
                s,
                r##"<line x1="{left}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{y:.2}</text>"##,
                w - right,
                left - 4.0,
                self.py(y) + 4.0,
                py = self.py(y)
            );
            let x = self.xmax * i as f64 / 4.0;
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"##,
                self.px(x),
                h - bottom + 16.0,
                human(x)
            );
        }
        let _ =
            write!(s, r##"<text x="{}" y="{}" text-anchor="middle">tokens</text>"##, (left + w - right) / 2.0, h - 6.0);
        s
    }
}

/// An SVG chart of the training and validation losses of `lines` against tokens.
pub fn loss_chart(lines: &[MetricsLine]) -> String {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for line in lines {
        match line {
            MetricsLine::Step(s) => train.push((s.tokens as f64, s.loss.map_or(f64::NAN, f64::from))),
            MetricsLine::Eval(e) => val.push((e.tokens as f64, e.val_loss.map_or(f64::NAN, f64::from))),
        }
    }
    let f = Frame::new(train.iter().chain(&val), 16.0);
    let mut s = f.open("loss");
    let _ = write!(s, r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##, f.points(&train));
    for &(x, y) in val.iter().filter(|p| p.1.is_finite()) {
        let _ = write!(s, r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#d62728"/>"##, f.px(x), f.py(y));
    }
    let lx = f.w - f.right - 150.0;
    let _ = write!(
        s,
        r##"<line x1="{lx}" x2="{}" y1="16" y2="16" stroke="#1f77b4" stroke-width="2"/><text x="{}" y="20">train</text><circle cx="{}" cy="16" r="3.5" fill="#d62728"/><text x="{}" y="20">validation</text></svg>"##,
        lx + 18.0,
        lx + 22.0,
        lx + 70.0,
        lx + 78.0
    );
    s
}

/// Several loss curves on one chart (one colour each, a legend at the right): `series` is
/// (name, points of (tokens, loss)).
pub fn curves_chart(series: &[(String, Vec<(f64, f64)>)]) -> String {
    const COLOURS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
    let f = Frame::new(series.iter().flat_map(|s| &s.1), 130.0);
    let mut s = f.open("training loss");
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let ly = f.top + 16.0 * i as f64;
        let name: String = name.chars().filter(|c| c.is_alphanumeric() || "_-. ".contains(*c)).collect();
        let _ = write!(
            s,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/><line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"##,
            f.points(points),
            f.w - f.right + 8.0,
            f.w - f.right + 26.0,
            f.w - f.right + 30.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>");
    s
}

fn human(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.1}B", x / 1e9),
        x if x >= 1e6 => format!("{:.1}M", x / 1e6),
        x if x >= 1e3 => format!("{:.0}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(i: u64, loss: f32) -> MetricsLine {
        MetricsLine::Step(StepRecord {
            comm_s: None,
            batch: 8,
            elapsed_s: 0.5,
            grad_norm: Some(1.0),
            loss: Some(loss),
            lr: 1e-3,
            mfu: 0.1,
            step: i,
            tokens: i * 1000,
            tokens_per_s: 100.0,
        })
    }

    #[test]
    fn the_chart_plots_every_training_point_and_each_validation_point() {
        let mut lines: Vec<MetricsLine> = (1..=20).map(|i| step(i, 10.0 - i as f32 * 0.3)).collect();
        let val = [("web".to_string(), Some(7.5))].into_iter().collect();
        lines.push(MetricsLine::Eval(EvalRecord { step: 10, tokens: 10000, val, val_loss: Some(7.5), val_tokens: 64 }));
        let svg = loss_chart(&lines);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        let poly = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(poly.split(' ').count(), 20);
        assert_eq!(svg.matches("<circle").count(), 2, "one validation point and the legend's");
        assert!(svg.contains(">20k<"), "the token axis is labelled");
    }

    #[test]
    fn lines_round_trip_and_a_bad_line_is_named() {
        let text = [step(1, 3.5), step(2, f32::NAN)]
            .iter()
            .map(|l| serde_json::to_string(l).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let back = parse(&text, "m.jsonl").unwrap();
        assert_eq!(back[0], step(1, 3.5));
        let MetricsLine::Step(s) = &back[1] else { panic!("{back:?}") };
        assert_eq!(s.loss, None, "a NaN loss is written as null and read back as None");
        // A line missing a field, or with one the format does not have, is an error with its line.
        let e = parse(&format!("{text}\n{{\"step\": 3, \"tokens\": 9}}"), "m.jsonl").unwrap_err().to_string();
        assert!(e.contains("m.jsonl:3"), "{e}");
        let extra = text.replacen("\"batch\"", "\"bogus\":1,\"batch\"", 1);
        assert!(parse(&extra, "m.jsonl").is_err());
    }
}
