//! `grist plan`'s peak-memory estimates against what each stage measures: every stage of the
//! demo recipe runs as its own process (`grist run --stage NAME`, as a scheduler runs it), its
//! peak resident set is read from the kernel when it exits (`wait4`'s `ru_maxrss`), and the
//! plan made afterwards (same inputs, same machine) may not underestimate any stage by more
//! than 1.5x.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{grist, ok};

/// Runs the grist binary to its end; returns whether it succeeded and its peak RSS in bytes.
/// The child is reaped by `wait4` (which also returns its resource usage), not `Child::wait`.
#[allow(clippy::zombie_processes)]
fn measured(args: &[&str], log: &Path) -> (bool, f64) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_grist"))
        .args(args)
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for the kernel to fill; the pid is our child's,
    // reaped here (the Child handle is not waited on afterwards).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    (libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, usage.ru_maxrss as f64 * 1024.0)
}

/// "64.0 MB" -> bytes.
fn bytes(s: &str) -> f64 {
    let (x, unit) = s.trim().split_once(' ').unwrap();
    let k = match unit {
        "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => panic!("unit {unit}"),
    };
    x.parse::<f64>().unwrap() * k
}

#[test]
fn the_plan_never_underestimates_a_stages_peak_memory_by_more_than_half() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("run");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml")).unwrap();
    let text = text
        .replace("\"out/demo", &format!("\"{}", root.display()))
        .replace("total_tokens = 250000", "total_tokens = 8192");
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, text).unwrap();
    let r = recipe.to_str().unwrap();
    let stages = ok(grist(&["run", "--list-stages"], &[]));
    let mut peak: BTreeMap<String, f64> = BTreeMap::new();
    for line in stages.lines() {
        let name = line.split(':').next().unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let (success, rss) = measured(&["-q", "run", r, "--stage", name], &log);
        assert!(success, "{name}: {}", std::fs::read_to_string(&log).unwrap_or_default());
        // The plan gives dedup's four steps one row, and decontamination's two.
        let row = match name {
            n if n.starts_with("dedup") => "dedup",
            n if n.starts_with("decontaminate") => "decontaminate",
            n => n,
        };
        let e = peak.entry(row.to_string()).or_default();
        *e = e.max(rss);
    }
    let plan = ok(grist(&["plan", r], &[]));
    let mut checked = 0;
    let mut report = String::new();
    for (stage, rss) in &peak {
        let Some(row) = plan.lines().find(|l| l.starts_with(&format!("{stage} "))) else { continue };
        let estimate = bytes(&row[27..39]);
        report += &format!("{stage:<15} measured {:>7.1} MB  plan {:>7.1} MB\n", rss / 1e6, estimate / 1e6);
        checked += 1;
    }
    println!("{report}");
    assert!(checked >= 9, "rows compared: {checked}\n{plan}");
    for (stage, rss) in &peak {
        let Some(row) = plan.lines().find(|l| l.starts_with(&format!("{stage} "))) else { continue };
        let estimate = bytes(&row[27..39]);
        assert!(
            *rss <= 1.5 * estimate,
            "{stage}: measured peak {:.1} MB, plan {:.1} MB\n{report}",
            rss / 1e6,
            estimate / 1e6
        );
    }
}
