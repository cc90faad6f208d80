//! The loss curve as a self-contained SVG: training loss per step (a line) and validation loss
//! (points), from a run's `metrics.jsonl`.

use std::fmt::Write;

use serde_json::Value;

/// An SVG chart of the `loss` and `val_loss` lines of `metrics` (JSON lines) against tokens.
pub fn loss_chart(metrics: &str) -> String {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for v in metrics.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let x = v["tokens"].as_f64().unwrap_or(0.0);
        if let Some(y) = v["loss"].as_f64() {
            train.push((x, y));
        }
        if let Some(y) = v["val_loss"].as_f64() {
            val.push((x, y));
        }
    }
    let (w, h, left, right, top, bottom) = (640.0, 360.0, 56.0, 16.0, 28.0, 40.0);
    let all: Vec<&(f64, f64)> = train.iter().chain(&val).filter(|p| p.1.is_finite()).collect();
    let xmax = all.iter().map(|p| p.0).fold(1.0f64, f64::max);
    let ymax = all.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let ymin = all.iter().map(|p| p.1).fold(f64::MAX, f64::min).min(ymax);
    let (ymin, ymax) =
        if all.is_empty() { (0.0, 1.0) } else { (ymin.floor().max(0.0), ymax.ceil().max(ymin.floor() + 1.0)) };
    let px = |x: f64| left + (w - left - right) * x / xmax;
    let py = |y: f64| top + (h - top - bottom) * (1.0 - (y - ymin) / (ymax - ymin));
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"##
    );
    let _ = write!(
        s,
        r##"<rect width="{w}" height="{h}" fill="white"/><text x="{left}" y="16" font-size="13">loss</text>"##
    );
    for i in 0..=4 {
        let y = ymin + (ymax - ymin) * i as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{y:.2}</text>"##,
            w - right,
            left - 4.0,
            py(y) + 4.0,
            py = py(y)
        );
        let x = xmax * i as f64 / 4.0;
        let _ =
            write!(s, r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"##, px(x), h - bottom + 16.0, human(x));
    }
    let _ = write!(s, r##"<text x="{}" y="{}" text-anchor="middle">tokens</text>"##, (left + w - right) / 2.0, h - 6.0);
    let points: Vec<String> =
        train.iter().filter(|p| p.1.is_finite()).map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
    let _ = write!(s, r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##, points.join(" "));
    for &(x, y) in val.iter().filter(|p| p.1.is_finite()) {
        let _ = write!(s, r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#d62728"/>"##, px(x), py(y));
    }
    let lx = w - right - 150.0;
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

    #[test]
    fn the_chart_plots_every_training_point_and_each_validation_point() {
        let metrics = (1..=20)
            .map(|i| format!("{{\"step\":{i},\"tokens\":{},\"loss\":{}}}", i * 1000, 10.0 - i as f64 * 0.3))
            .chain(["{\"step\":10,\"tokens\":10000,\"val_loss\":7.5}".to_string(), "not json".to_string()])
            .collect::<Vec<_>>()
            .join("\n");
        let svg = loss_chart(&metrics);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        let poly = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(poly.split(' ').count(), 20);
        assert_eq!(svg.matches("<circle").count(), 2, "one validation point and the legend's");
        assert!(svg.contains(">20k<"), "the token axis is labelled");
    }
}
