//! grist's own files from arbitrary bytes: token shards, quality models (`.gqm`), document
//! Parquet shards and safetensors checkpoints. Each is opened from a file as grist opens it;
//! bad bytes must be an error naming the file, and what opens must be self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shards::{DocReader, Loc, TokenShard};

fn file(name: &str, data: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("grist-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fuzz_target!(|data: &[u8]| {
    // Token shard: the header's count matches the bytes; every token reads back.
    let p = file("s.bin", data);
    if let Ok(s) = TokenShard::open(&Loc::local(&p)) {
        assert_eq!(1024 + s.len() * s.width().bytes(), data.len());
        let v = s.to_vec();
        assert_eq!(v.len(), s.len());
        let max = v.iter().copied().max().unwrap_or(0) as usize;
        assert!(s.check_vocab(max + 1).is_ok());
        assert_eq!(s.check_vocab(max).is_err(), !v.is_empty());
    }
    // Quality model: what parses writes back to the same bytes.
    if let Ok(m) = pipeline::steps::quality::model::QualityModel::from_bytes(data, "m.gqm") {
        assert_eq!(m.to_bytes(), data);
    }
    // Document shard: rows as the footer counts them, or an error.
    let p = file("d.parquet", data);
    if let Ok(r) = DocReader::open(&Loc::local(&p)) {
        if let Ok(docs) = r.read_docs() {
            assert_eq!(docs.len() as u64, r.num_rows());
        }
    }
    // safetensors: what reads writes back and reads the same.
    let p = file("m.safetensors", data);
    if let Ok((tensors, meta)) = trainer::checkpoint::read_safetensors(&p) {
        let q = file("again.safetensors", b"");
        trainer::checkpoint::write_safetensors(&q, &tensors, &meta).unwrap();
        let (again, meta2) = trainer::checkpoint::read_safetensors(&q).unwrap();
        assert_eq!(meta2, meta);
        assert_eq!(again.len(), tensors.len());
        for (a, b) in again.iter().zip(&tensors) {
            assert_eq!((&a.name, &a.shape), (&b.name, &b.shape));
            assert!(a.data.iter().zip(&b.data).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
});
