//! Text processing shared by several steps: Spark's Tokenizer + HashingTF features (the
//! quality classifier and `gpt3`-mode dedup use the same ones) and URL normalization (reddit
//! selects URLs, ingest matches crawled pages against them).

pub mod features;
pub mod urls;
