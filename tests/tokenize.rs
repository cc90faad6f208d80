//! `grist tokenize` on the built-in sample: shards an independent llm.c-header reader accepts,
//! a sidecar whose offsets point at each document's `<|endoftext|>` and tokens that decode back
//! to the document, a seeded validation split, and the same bytes from two task slices.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{grist, ok, sample, sample_recipe};
use shards::parquet_io::ParquetSource;
use shards::{DocReader, Loc, Manifest, str_col};

/// llm.c's reader: 256 int32 header (magic 20240520, version 1, token count), then uint16.
fn llmc_read(bytes: &[u8]) -> Vec<u16> {
    let h = |i: usize| i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    assert_eq!(h(0), 20240520, "magic");
    assert_eq!(h(1), 1, "version");
    let n = h(2) as usize;
    assert_eq!(bytes.len(), 1024 + 2 * n, "size agrees with the count");
    bytes[1024..].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

fn tokenize(dir: &Path, out: &Path, tasks: usize) {
    let r = sample_recipe(dir, out, "");
    let mut text = std::fs::read_to_string(&r).unwrap();
    text.push_str("\n[tokenize]\ninput = \"ingest\"\nshard_tokens = 20000\nval_fraction = 0.1\n");
    text.push_str("\n[blend]\ntotal_tokens = 50000\nshard_tokens = 10000\n");
    text.push_str("[[blend.sources]]\nname = \"common_crawl\"\nweight = 0.6\n");
    text.push_str("[[blend.sources]]\nname = \"books\"\nweight = 0.4\n");
    std::fs::write(&r, text).unwrap();
    ok(grist(&["-q", "ingest", r.to_str().unwrap()], &[]));
    for cmd in ["tokenize", "blend"] {
        for t in 0..tasks {
            let (t, n) = (t.to_string(), tasks.to_string());
            ok(grist(&["-q", cmd, r.to_str().unwrap(), "--task", &t, "--tasks", &n], &[]));
        }
    }
}

#[test]
fn sample_tokens_are_llmc_shards_with_a_true_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sample(d, 600);
    let out = d.join("one");
    tokenize(d, &out, 1);
    let tdir = out.join("tokenize");
    let m = Manifest::read(&Loc::local(tdir.join("manifest.json"))).unwrap();
    assert!(m.side.len() >= 3, "several shards at 20,000 tokens each: {:?}", m.side);
    let shards: std::collections::BTreeMap<String, Vec<u16>> =
        m.side.iter().map(|f| (f.path.clone(), llmc_read(&std::fs::read(tdir.join(&f.path)).unwrap()))).collect();
    for (name, t) in &shards {
        assert!(t.len() <= 20_000 || t.iter().filter(|&&x| x == 50256).count() == 1, "{name}: {}", t.len());
    }
    // Every document: EOT at its offset, then tokens that decode to its text.
    let texts: std::collections::BTreeMap<String, String> = {
        let im = Manifest::read(&Loc::local(out.join("ingest/manifest.json"))).unwrap();
        im.outputs
            .iter()
            .flat_map(|f| DocReader::open(&Loc::local(out.join("ingest").join(&f.path))).unwrap().read_docs().unwrap())
            .map(|d| (d.id, d.text))
            .collect()
    };
    let (mut val, mut total) = (0usize, 0usize);
    for f in &m.outputs {
        for b in ParquetSource::open(&Loc::local(tdir.join(&f.path)), "token_docs", 1).unwrap().read_all().unwrap() {
            let (ids, splits, shard) =
                (str_col(&b, "id").unwrap(), str_col(&b, "split").unwrap(), str_col(&b, "shard").unwrap());
            let num = |c: &str| {
                b.column_by_name(c)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<shards::arrow::array::UInt64Array>()
                    .unwrap()
                    .clone()
            };
            let (offset, count) = (num("offset"), num("tokens"));
            for i in 0..b.num_rows() {
                let t = &shards[shard.value(i)];
                let (o, n) = (offset.value(i) as usize, count.value(i) as usize);
                assert_eq!(t[o], 50256);
                let toks: Vec<u32> = t[o + 1..o + n].iter().map(|&x| x as u32).collect();
                assert_eq!(pipeline::steps::tokenize::gpt2_decode(&toks).unwrap(), texts[ids.value(i)]);
                assert!(shard.value(i).contains(splits.value(i)));
                val += (splits.value(i) == "val") as usize;
                total += 1;
            }
        }
    }
    assert_eq!(total, texts.len());
    let frac = val as f64 / total as f64;
    assert!((0.05..0.16).contains(&frac), "validation fraction {frac}");

    // Two slices: the same bytes.
    let two = d.join("two");
    tokenize(d, &two, 2);
    assert!(common::shard_bytes(&tdir) == common::shard_bytes(&two.join("tokenize")));
    for f in &m.side {
        assert_eq!(
            std::fs::read(tdir.join(&f.path)).unwrap(),
            std::fs::read(two.join("tokenize").join(&f.path)).unwrap()
        );
    }
    // The blend too: its shards, sidecars and order, for one task and two.
    let (b1, b2) = (out.join("blend"), two.join("blend"));
    let bm = Manifest::read(&Loc::local(b1.join("manifest.json"))).unwrap();
    assert!(bm.side.len() >= 3, "several blend shards: {:?}", bm.side);
    assert!(common::shard_bytes(&b1) == common::shard_bytes(&b2));
    let order = ["order/docs.bin", "order/ids.bin", "order/copies.bin", "order/report.json"];
    for f in bm.side.iter().map(|f| f.path.as_str()).chain(order) {
        assert!(std::fs::read(b1.join(f)).unwrap() == std::fs::read(b2.join(f)).unwrap(), "blend/{f} differs");
    }
}
