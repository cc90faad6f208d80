//! Ingest's units: each source's paths expanded (folders walked, `*`/`?` patterns in the last
//! component matched), formats detected by extension, files sorted and packed into units.

use super::*;

/// One input file in the plan.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub source: String,
    pub loc: Loc,
    /// Path within the source (relative to the configured path), used in ids.
    pub rel: String,
    pub bytes: u64,
    /// Modification time (ns since the epoch) where the storage has one; in the fingerprint,
    /// so an input rewritten in place redoes its unit.
    pub modified: Option<i64>,
    pub format: InputFormat,
}

/// Expands the sources into units of input files, deterministic for given inputs; also the
/// number of files in folders skipped for an unknown extension.
pub fn input_units(cfg: &IngestConfig) -> Result<(Vec<Vec<InputFile>>, u64), StageError> {
    let mut units: Vec<Vec<InputFile>> = Vec::new();
    let mut skipped = 0u64;
    for source in &cfg.sources {
        let mut files = Vec::new();
        for path in &source.paths {
            let (found, skip) = expand(source, path)?;
            files.extend(found);
            skipped += skip;
        }
        // Overlapping paths (a folder and a pattern inside it) name a file once; two different
        // files with the same path within the source would get the same document ids.
        let mut seen_locs = std::collections::BTreeSet::new();
        files.retain(|f| seen_locs.insert(f.loc.to_string()));
        let mut rels = std::collections::BTreeMap::new();
        for f in &files {
            if let Some(other) = rels.insert(f.rel.clone(), f.loc.to_string()) {
                return Err(StageError::Input {
                    at: At::file(f.loc.to_string()),
                    msg: format!(
                        "source `{}` has two files at path `{}` (also {other}); document ids would collide\nhint: rename one, or list them under separate sources",
                        source.name, f.rel
                    ),
                });
            }
        }
        if files.is_empty() {
            return Err(StageError::Input {
                at: At::file(source.paths.join(", ")),
                msg: format!(
                    "source `{}` matched no input files\nhint: check the paths in [[ingest.sources]]",
                    source.name
                ),
            });
        }
        // Pack consecutive files of one source into units of about `unit_bytes`.
        let mut current: Vec<InputFile> = Vec::new();
        let mut current_bytes = 0u64;
        for f in files {
            if !current.is_empty() && current_bytes + f.bytes > cfg.unit_bytes {
                units.push(std::mem::take(&mut current));
                current_bytes = 0;
            }
            current_bytes += f.bytes;
            current.push(f);
        }
        if !current.is_empty() {
            units.push(current);
        }
    }
    Ok((units, skipped))
}

pub(super) fn expand(source: &SourceConfig, path: &str) -> Result<(Vec<InputFile>, u64), StageError> {
    let (base, pattern) = split_pattern(path);
    let root = Loc::parse(&base)?;
    let listed = if pattern.is_none() && root.exists()? { vec![root.clone()] } else { root.list()? };
    if listed.is_empty() {
        return Err(StageError::Input { at: At::file(path), msg: "no such file or folder, or it is empty".into() });
    }
    let root_str = root.to_string();
    let mut out = Vec::new();
    let mut skipped = 0;
    for loc in listed {
        let full = loc.to_string();
        let rel = full.strip_prefix(&root_str).map(|r| r.trim_start_matches('/')).filter(|r| !r.is_empty());
        let rel = rel.map(str::to_string).unwrap_or_else(|| loc.file_name());
        if let Some(p) = &pattern
            && !glob_match(p, &rel)
        {
            continue;
        }
        let format = match source.format {
            InputFormat::Auto => match detect_format(&loc.file_name()) {
                Some(f) => f,
                None => {
                    tracing::warn!(file = %loc, "skipping a file whose extension names no input format");
                    skipped += 1;
                    continue;
                }
            },
            f => f,
        };
        let (bytes, modified) = loc.stat()?;
        out.push(InputFile { source: source.name.clone(), bytes, modified, loc, rel, format });
    }
    Ok((out, skipped))
}

/// Splits `dir/*.jsonl.gz` into (`dir`, Some(`*.jsonl.gz`)); paths without wildcards are whole.
pub(super) fn split_pattern(path: &str) -> (String, Option<String>) {
    match path.rsplit_once('/') {
        Some((dir, last)) if last.contains(['*', '?']) => (dir.to_string(), Some(last.to_string())),
        None if path.contains(['*', '?']) => (".".to_string(), Some(path.to_string())),
        _ => (path.to_string(), None),
    }
}

/// Shell-style match of `*` and `?` against a file's relative path; neither crosses `/`.
pub(super) fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None; // (pattern index after '*', name index it matched up to)
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi + 1, ni));
            pi += 1;
        } else if pi < p.len() && (p[pi] == n[ni] || (p[pi] == '?' && n[ni] != '/')) {
            pi += 1;
            ni += 1;
        } else if let Some((after, matched)) = star
            && n[matched] != '/'
        {
            star = Some((after, matched + 1));
            pi = after;
            ni = matched + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

pub(super) fn detect_format(name: &str) -> Option<InputFormat> {
    let name = name.to_ascii_lowercase();
    let stem = [".gz", ".zst", ".zstd", ".xz", ".bz2"].iter().find_map(|c| name.strip_suffix(c)).unwrap_or(&name);
    let ext = stem.rsplit_once('.').map(|(_, e)| e)?;
    match ext {
        "jsonl" | "json" | "ndjson" => Some(InputFormat::Jsonl),
        "txt" | "text" | "md" => Some(InputFormat::Text),
        "warc" | "wet" | "arc" => Some(InputFormat::Warc),
        "parquet" => Some(InputFormat::Parquet),
        _ => None,
    }
}
