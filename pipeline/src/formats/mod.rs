//! Formats from outside grist that steps read: WARC/WET records over multi-member gzip
//! (`warc`), HTML decoding and main-text extraction (`html`), and compressed inputs by
//! extension (`codec`). grist's own formats live in the `shards` crate.

pub mod codec;
pub mod html;
pub mod warc;
