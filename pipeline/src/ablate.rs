//! `[ablate]`: does the recipe make better models? Arms that differ only in which of the
//! recipe's data stages apply, each tokenized and used to train the same small GPT on the same
//! number of tokens (`grist ablate`, in the binary: it links the trainer). This module holds the
//! recipe table and which arms a recipe has; the arms read the recipe's own stage outputs, so
//! they share everything up to the stage where they part.

use serde::{Deserialize, Serialize};
use shards::Loc;

use crate::core::error::StageError;
use crate::core::recipe::Recipe;
use crate::core::slice::TaskSlice;
use crate::steps::tokenize::{self, TokenizeConfig};
use crate::steps::{blend, decontaminate, dedup, filters, ingest, quality};

/// `[ablate]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblateConfig {
    /// The arms to train, by name (see [`arms`]); empty: every arm the recipe has.
    #[serde(default)]
    pub arms: Vec<String>,
    /// The model and its training, the same for every arm: the keys of `[train]` (`model`,
    /// `seq_len`, `total_tokens`, `lr`, `seed`, ...) without `train_data`, `val_data` and `out`.
    pub train: toml::Table,
    /// Held-out sets the arms are evaluated on (never training data).
    #[serde(default)]
    pub eval: Vec<EvalSet>,
    /// Bootstrap resamples of the intervals.
    #[serde(default = "default_reps")]
    pub reps: usize,
}

fn default_reps() -> usize {
    1000
}

/// `[[ablate.eval]]`: a held-out set, any format `ingest` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSet {
    pub name: String,
    pub paths: Vec<String>,
    /// One-document-per-file text longer than this is split into documents at paragraph breaks
    /// (as `ingest.sources.split_bytes`): a book or an article dump becomes many documents, so
    /// the bootstrap over documents has samples. 0 keeps files whole.
    #[serde(default)]
    pub split_bytes: u64,
}

/// What an arm trains on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArmData {
    /// The documents of this stage of the run, tokenized, in their natural proportions.
    Documents(&'static str),
    /// The recipe's own training mixture (`blend`).
    Mixture,
}

/// One arm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Arm {
    pub name: String,
    pub data: ArmData,
    /// What the arm's data has been through.
    pub about: String,
}

/// The arms a recipe has, in order, each adding one stage: `raw` (ingest only), `filters`,
/// `quality` (the classifier's filter), `dedup`, `decontaminate` (each when the recipe has the
/// stage), and `recipe` (the blend's mixture, when the recipe has `[blend]`). `select` picks by
/// name (empty: all); an unknown name is an error listing the arms there are.
pub fn arms(recipe: &Recipe, select: &[String]) -> Result<Vec<Arm>, StageError> {
    let mut all = vec![Arm { name: "raw".into(), data: ArmData::Documents(ingest::STAGE), about: "ingest".into() }];
    let mut chain = vec!["ingest"];
    let stages: [(&str, &'static str, bool); 4] = [
        ("filters", filters::STAGE, recipe.filters.is_some()),
        ("quality", quality::filter::STAGE, recipe.quality_filter.is_some()),
        ("dedup", dedup::STAGE, recipe.dedup.is_some()),
        ("decontaminate", decontaminate::STAGE, recipe.decontaminate.is_some()),
    ];
    for (name, stage, present) in stages {
        if present {
            chain.push(stage);
            all.push(Arm { name: name.into(), data: ArmData::Documents(stage), about: chain.join(" + ") });
        }
    }
    if recipe.blend.is_some() && recipe.tokenize.is_some() {
        chain.push("tokenize + blend (the mixture)");
        all.push(Arm { name: "recipe".into(), data: ArmData::Mixture, about: chain.join(" + ") });
    }
    if select.is_empty() {
        return Ok(all);
    }
    select
        .iter()
        .map(|s| {
            all.iter().find(|a| &a.name == s).cloned().ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
                StageError::Recipe(format!("ablate arm {s:?}: this recipe has the arms {}", names.join(", ")))
            })
        })
        .collect()
}

/// The directory of an arm's outputs: `{run.out}/ablate/{arm}`.
pub fn arm_dir(recipe: &Recipe, arm: &str) -> Result<Loc, StageError> {
    Ok(Loc::parse(&recipe.run.out)?.join("ablate").join(arm))
}

/// The token shards an arm trains on, made if needed: the recipe's own `tokenize` output when
/// the arm's documents are the ones the recipe tokenizes, the `blend` output for the mixture,
/// else the arm's documents tokenized (the recipe's `[tokenize]` settings) into
/// `{run.out}/ablate/{arm}/tokenize` (skipped when up to date, as every stage is). The run's
/// stages must have run.
pub fn arm_tokens(recipe: &Recipe, arm: &Arm) -> Result<Loc, StageError> {
    let out = Loc::parse(&recipe.run.out)?;
    let cfg = recipe.tokenize.clone().unwrap_or_else(|| TokenizeConfig {
        input: ingest::STAGE.into(),
        shard_tokens: 100_000_000,
        val_fraction: 0.005,
    });
    match arm.data {
        ArmData::Mixture => Ok(out.join(blend::STAGE)),
        ArmData::Documents(stage) if recipe.tokenize.is_some() && cfg.input == stage => Ok(out.join(tokenize::STAGE)),
        ArmData::Documents(stage) => {
            let dir = arm_dir(recipe, &arm.name)?.join(tokenize::STAGE);
            let cfg = TokenizeConfig { input: stage.into(), ..cfg };
            tokenize::run_into(&cfg, recipe.run.seed, &out.join(stage), &dir, TaskSlice::ALL)?;
            Ok(dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = r#"
[run]
out = "o"
[ingest]
[[ingest.sources]]
name = "a"
paths = ["x"]
[quality]
positives = ["a"]
negatives = ["a"]
[quality_filter]
[dedup]
[tokenize]
input = "dedup"
[blend]
total_tokens = 1000
[[blend.sources]]
name = "a"
weight = 1.0
[ablate.train]
total_tokens = 1000
"#;

    #[test]
    fn arms_follow_the_recipes_stages_and_unknown_names_are_refused() {
        let r = Recipe::parse(RECIPE, "t", &[]).unwrap();
        let a = arms(&r, &[]).unwrap();
        let names: Vec<&str> = a.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["raw", "quality", "dedup", "recipe"]);
        assert_eq!(a[2].data, ArmData::Documents("dedup"));
        assert_eq!(a[2].about, "ingest + quality_filter + dedup");
        assert_eq!(a[3].data, ArmData::Mixture);
        let two = arms(&r, &["recipe".into(), "raw".into()]).unwrap();
        assert_eq!(two.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["recipe", "raw"]);
        let e = arms(&r, &["filters".into()]).unwrap_err().to_string();
        assert!(e.contains("raw, quality, dedup, recipe"), "{e}");
    }
}
