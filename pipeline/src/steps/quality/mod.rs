//! The GPT-3 quality classifier, one folder: Spark-exact features (`crate::text::features`),
//! logistic regression (`logistic`), the model file and the Pareto rule (`model`), the
//! training step (`train`, recipe table `[quality]`), the filter step (`filter`, table
//! `[quality_filter]`) and scoring of arbitrary files (`score`, `grist quality score`).

pub mod filter;
pub mod logistic;
pub mod model;
pub mod score;
pub mod train;
