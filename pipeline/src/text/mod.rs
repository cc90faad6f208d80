//! Text processing shared by several steps: Spark's Tokenizer + HashingTF features (the
//! quality classifier and `gpt3`-mode dedup use the same ones) and URL normalization (reddit
//! selects URLs, ingest matches crawled pages against them) and GPT-2 BPE; Python's string semantics and spaCy's English tokenizer, which the
//! heuristic filters count words and sentences with.

pub mod bpe;
pub mod fasttext;
pub mod features;
pub mod psl;
pub mod pystr;
pub mod spacy;
pub mod urls;
