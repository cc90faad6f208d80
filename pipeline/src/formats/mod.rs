//! Formats from outside grist that steps read: WARC/WET records over multi-member gzip
//! (`warc`, with whole members decoded by libdeflate: `inflate`), HTML decoding and main-text extraction (`html`), fields of JSON records without a
//! value tree (`jsonl`), and compressed inputs by magic (`codec`). grist's own formats live in
//! the `shards` crate.

pub mod codec;
pub mod html;
pub mod inflate;
pub mod jsonl;
pub mod warc;
