//! Recipes: one typed TOML file configures every stage. Unknown keys are errors, and
//! `--set key.path=value` overrides must name a key the recipe schema has.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::error::StageError;

/// A whole recipe. Each stage reads its own section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub run: RunConfig,
    /// When present, `grist run` first writes the built-in synthetic corpus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<crate::steps::synthetic::SyntheticConfig>,
    /// When present, `grist run` selects WebText URLs from Pushshift dumps before ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reddit: Option<crate::steps::reddit::RedditConfig>,
    pub ingest: crate::steps::ingest::IngestConfig,
    /// URL lists, language ID, Gopher, C4, FineWeb and PII filters (`grist filters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<crate::steps::filters::FiltersConfig>,
    /// The quality classifier (`grist quality train`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::steps::quality::train::QualityConfig>,
    /// GPT-3's quality filter (`grist quality filter`); needs `[quality]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_filter: Option<crate::steps::quality::filter::FilterConfig>,
    /// Exact and MinHash-LSH deduplication (`grist dedup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<crate::steps::dedup::DedupConfig>,
    /// Benchmark decontamination (`grist decontaminate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decontaminate: Option<crate::steps::decontaminate::DecontamConfig>,
    /// GPT-2 BPE into llm.c token shards (`grist tokenize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenize: Option<crate::steps::tokenize::TokenizeConfig>,
    /// The training mixture over the tokens (`grist blend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blend: Option<crate::steps::blend::BlendConfig>,
    /// Training (`grist train`): the keys of `trainer::train::TrainConfig`, checked by the
    /// trainer; `train_data`, `val_data` and `out` default to this run's blend, tokenize and
    /// train directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<toml::Table>,
    /// `grist ablate`: arms over the recipe's stages, one small GPT each, held-out sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ablate: Option<crate::ablate::AblateConfig>,
}

/// Settings shared by every stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Output root (local path or URI); stage `X` writes to `{out}/X`.
    pub out: String,
    /// Seed of every random draw (combined with stage name and document id).
    #[serde(default)]
    pub seed: u64,
}

impl Recipe {
    /// Reads a recipe file and applies `key.path=value` overrides.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Recipe, StageError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            StageError::Recipe(format!(
                "{}: cannot read recipe: {e}\nhint: recipes live in recipes/, e.g. recipes/demo.toml",
                path.display()
            ))
        })?;
        Recipe::parse(&text, &path.display().to_string(), overrides)
    }

    /// Parses recipe text (`name` is used in messages) and applies overrides.
    pub fn parse(text: &str, name: &str, overrides: &[String]) -> Result<Recipe, StageError> {
        let recipe: Recipe = toml::from_str(text).map_err(|e| StageError::Recipe(format!("{name}: {e}")))?;
        if overrides.is_empty() {
            recipe.validate(name)?;
            return Ok(recipe);
        }
        // Overrides apply to the fully resolved recipe (defaults filled in), so any key the
        // schema has can be set, whether or not the file spells it out.
        let mut value = toml::Value::try_from(&recipe).map_err(|e| StageError::Recipe(format!("{name}: {e}")))?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let recipe: Recipe = value.try_into().map_err(|e: toml::de::Error| {
            // A key an override added that the schema lacks: name the override.
            let said = e.to_string();
            let added = overrides.iter().filter_map(|o| o.split_once('=')).map(|(k, _)| k.trim()).find(|k| {
                k.rsplit_once('.').is_some_and(|(_, last)| said.contains(&format!("unknown field `{last}`")))
            });
            match added.and_then(|k| k.rsplit_once('.')) {
                Some((table, last)) => {
                    StageError::Recipe(format!("override \"{table}.{last}\": `{table}` has no key `{last}`: {said}"))
                }
                None => StageError::Recipe(format!("{name} after overrides: {said}")),
            }
        })?;
        recipe.validate(name)?;
        Ok(recipe)
    }

    fn validate(&self, name: &str) -> Result<(), StageError> {
        let bad = |msg: String| Err(StageError::Recipe(format!("{name}: {msg}")));
        if self.ingest.sources.is_empty() {
            return bad("[ingest] has no sources\nhint: add [[ingest.sources]] with a name and paths".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.ingest.sources {
            if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return bad(format!("source name {:?} must be non-empty ASCII letters, digits, '_' or '-'", s.name));
            }
            if !names.insert(&s.name) {
                return bad(format!("source {:?} appears twice", s.name));
            }
            if s.paths.is_empty() {
                return bad(format!("source {:?} has no paths", s.name));
            }
        }
        if let Some(w) = &self.ingest.webtext {
            for f in &w.from {
                if !names.contains(f) {
                    return bad(format!("ingest.webtext.from names {f:?}, which is not an ingest source"));
                }
            }
            if w.urls.is_none() && self.reddit.is_none() {
                return bad("ingest.webtext needs [reddit] or ingest.webtext.urls (a reddit stage directory)".into());
            }
        }
        if let Some(f) = &self.filters
            && let Err(e) = f.check()
        {
            return bad(e);
        }
        if let Some(q) = &self.quality
            && !(1..=crate::text::features::MAX_NGRAMS).contains(&q.ngrams)
        {
            return bad(format!(
                "quality.ngrams must be 1 (tokens) to {} (tokens and n-grams up to it), got {}",
                crate::text::features::MAX_NGRAMS,
                q.ngrams
            ));
        }
        if self.quality_filter.is_some() && self.quality.is_none() {
            return bad("[quality_filter] needs [quality] (its num_features, and the model it trains)".into());
        }
        if let Some(f) = &self.quality_filter
            && !(f.alpha > 0.0 && f.alpha.is_finite())
        {
            return bad(format!("quality_filter.alpha must be positive, got {}", f.alpha));
        }
        if let Some(d) = &self.dedup {
            if !(0.0..=1.0).contains(&d.threshold) || !(0.0..=1.0).contains(&d.max_removal) {
                return bad("dedup.threshold and dedup.max_removal must be between 0 and 1".into());
            }
            if d.bands == 0 || d.rows == 0 || d.num_hash_tables == 0 || d.ngram == 0 || d.num_features == 0 {
                return bad("dedup.bands, rows, num_hash_tables, ngram and num_features must be positive".into());
            }
        }
        if let Some(d) = &self.decontaminate
            && (d.n == 0
                || d.benchmarks.is_empty()
                || d.benchmarks.iter().any(|b| b.paths.is_empty() || b.fields.is_empty()))
        {
            return bad("decontaminate needs n > 0 and benchmarks, each with paths and fields".into());
        }
        if let Some(t) = &self.tokenize
            && (t.shard_tokens == 0
                || t.shard_tokens > shards::tokens::MAX_TOKENS
                || !(0.0..=1.0).contains(&t.val_fraction))
        {
            return bad("tokenize.shard_tokens must be 1..2^31-1 and tokenize.val_fraction in [0, 1]".into());
        }
        if let Some(b) = &self.blend
            && (b.sources.is_empty() || b.shard_tokens == 0 || b.shard_tokens > shards::tokens::MAX_TOKENS)
        {
            return bad("blend needs sources, and shard_tokens in 1..2^31-1".into());
        }
        if self.ingest.max_doc_bytes == 0 || self.ingest.max_doc_bytes > 1 << 30 {
            return bad("ingest.max_doc_bytes must be between 1 and 2^30".into());
        }
        if self.ingest.unit_bytes == 0 || self.ingest.row_group_bytes == 0 {
            return bad("ingest.unit_bytes and ingest.row_group_bytes must be positive".into());
        }
        Ok(())
    }

    /// Whether the recipe has the table `name` (a step's table; `run` and `ingest` always).
    pub fn has_table(&self, name: &str) -> bool {
        toml::Value::try_from(self).ok().is_some_and(|v| v.get(name).is_some())
    }

    /// The resolved recipe as TOML (printed at start, stored in manifests).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Applies one `a.b.c=value` override to a resolved recipe. The tables on the way must exist
/// (the last key may be one the schema leaves out by default; an unknown one is refused when the
/// recipe is read back); `value`
/// is read as a TOML value (`5`, `true`, `"x"`, `[1, 2]`), or taken as a bare string.
fn apply_override(root: &mut toml::Value, spec: &str) -> Result<(), StageError> {
    let (key, raw) = spec.split_once('=').ok_or_else(|| {
        StageError::Recipe(format!("override {spec:?} is not KEY=VALUE\nhint: e.g. --set ingest.min_words=5"))
    })?;
    let key = key.trim();
    let mut node = &mut *root;
    let mut walked = Vec::new();
    let parts: Vec<&str> = key.split('.').collect();
    for (depth, &part) in parts.iter().enumerate() {
        let here = if walked.is_empty() { "the recipe".to_string() } else { format!("`{}`", walked.join(".")) };
        node = match node {
            toml::Value::Table(t) => {
                let keys: Vec<String> = t.keys().cloned().collect();
                // An optional key the resolved recipe leaves out (its default is not written,
                // e.g. `quality.ngrams`): set it, and let the schema refuse a key it lacks.
                if depth + 1 == parts.len() && depth > 0 {
                    t.entry(part.to_string()).or_insert(toml::Value::Boolean(false));
                }
                t.get_mut(part).ok_or_else(|| {
                    StageError::Recipe(format!(
                        "override {key:?}: {here} has no key `{part}`\nhint: keys there: {}",
                        keys.join(", ")
                    ))
                })?
            }
            toml::Value::Array(a) => {
                let len = a.len();
                let i: usize = part.parse().map_err(|_| {
                    StageError::Recipe(format!("override {key:?}: {here} is a list; index it with a number (0..{len})"))
                })?;
                a.get_mut(i).ok_or_else(|| {
                    StageError::Recipe(format!("override {key:?}: {here} has {len} entries, no index {i}"))
                })?
            }
            _ => {
                return Err(StageError::Recipe(format!("override {key:?}: {here} is a value, not a table")));
            }
        };
        walked.push(part);
    }
    let raw = raw.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    *node = parsed;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::ingest::InputFormat;

    const R: &str = r#"
[run]
out = "out/x"

[ingest]
min_words = 3

[[ingest.sources]]
name = "web"
paths = ["data/web"]
"#;

    #[test]
    fn defaults_fill_in() {
        let r = Recipe::parse(R, "r.toml", &[]).unwrap();
        assert_eq!(r.ingest.unit_bytes, 256 << 20);
        assert_eq!(r.ingest.sources[0].text_field, "text");
        assert_eq!(r.ingest.sources[0].format, InputFormat::Auto);
        assert_eq!(r.run.seed, 0);
    }

    #[test]
    fn overrides_set_existing_keys_including_defaults_and_list_items() {
        let o = [
            "ingest.min_words=7",
            "ingest.strict=true",
            "run.out=elsewhere/run",
            "ingest.sources.0.format=\"jsonl\"",
            "ingest.unit_bytes=1024",
        ];
        let r = Recipe::parse(R, "r.toml", &o.map(String::from)).unwrap();
        assert_eq!(r.ingest.min_words, 7);
        assert!(r.ingest.strict);
        assert_eq!(r.run.out, "elsewhere/run");
        assert_eq!(r.ingest.sources[0].format, InputFormat::Jsonl);
        assert_eq!(r.ingest.unit_bytes, 1024);
    }

    #[test]
    fn overrides_of_missing_keys_fail_with_the_keys_that_exist() {
        let e = Recipe::parse(R, "r.toml", &["ingest.min_wordz=1".into()]).unwrap_err().to_string();
        assert!(e.contains("no key `min_wordz`") && e.contains("min_words"), "{e}");
        let e = Recipe::parse(R, "r.toml", &["ingestt.min_words=1".into()]).unwrap_err().to_string();
        assert!(e.contains("no key `ingestt`") && e.contains("ingest"), "{e}");
        let with_quality = format!("{R}\n[quality]\npositives = [\"web\"]\nnegatives = [\"web\"]\n");
        let e = Recipe::parse(&with_quality, "r.toml", &["quality.ngram=2".into()]).unwrap_err().to_string();
        assert!(e.contains("ngram") && e.contains("ngrams"), "{e}");
        // A key the resolved recipe leaves out at its default can still be set.
        let r = Recipe::parse(&with_quality, "r.toml", &["quality.ngrams=2".into()]).unwrap();
        assert_eq!(r.quality.as_ref().map(|q| q.ngrams), Some(2));
        let e = Recipe::parse(R, "r.toml", &["ingest.sources.3.name=x".into()]).unwrap_err().to_string();
        assert!(e.contains("no index 3"), "{e}");
        let e = Recipe::parse(R, "r.toml", &["ingest.min_words".into()]).unwrap_err().to_string();
        assert!(e.contains("KEY=VALUE"), "{e}");
        let e = Recipe::parse(R, "r.toml", &["ingest.min_words=many".into()]).unwrap_err().to_string();
        assert!(e.contains("min_words"), "{e}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let e = Recipe::parse(&R.replace("min_words", "min_wordz"), "r.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("r.toml") && e.contains("min_wordz"), "{e}");
    }

    #[test]
    fn validation_catches_duplicate_and_bad_names() {
        let dup = format!("{R}\n[[ingest.sources]]\nname = \"web\"\npaths = [\"y\"]\n");
        assert!(Recipe::parse(&dup, "r.toml", &[]).unwrap_err().to_string().contains("twice"));
        let bad = R.replace("name = \"web\"", "name = \"we b\"");
        assert!(Recipe::parse(&bad, "r.toml", &[]).is_err());
    }

    #[test]
    fn shipped_recipes_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                Recipe::load(&p, &[]).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 1, "no recipes found in {}", dir.display());
    }
}
