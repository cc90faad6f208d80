//! A token shard written by grist, read back by a reader written from llm.c's documented
//! layout (dev/data/data_common.py `write_datafile` and llmc/dataloader.h), not from our code:
//! header = 256 little-endian int32; header[0] = 20240520 (magic), header[1] = 1 (version),
//! header[2] = number of tokens; then that many little-endian uint16 tokens.
#![allow(clippy::unwrap_used)]

use shards::{Loc, TokenWidth, TokenWriter};

fn llmc_read(bytes: &[u8]) -> Result<Vec<u16>, String> {
    if bytes.len() < 256 * 4 {
        return Err("file shorter than the header".into());
    }
    let header: Vec<i32> = bytes[..1024].chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
    if header[0] != 20240520 {
        return Err("Bad magic in the data file".into());
    }
    if header[1] != 1 {
        return Err("Bad version in data file".into());
    }
    let ntok = header[2] as usize;
    let body = &bytes[1024..];
    if body.len() != ntok * 2 {
        return Err(format!("number of tokens read does not match header: {} vs {ntok}", body.len() / 2));
    }
    Ok(body.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
}

#[test]
fn llmc_reads_what_grist_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train_000001.bin");
    let tokens: Vec<u32> = (0..100_003u32).map(|i| i.wrapping_mul(2_654_435_761) % 50_257).collect();
    let mut w = TokenWriter::create(&Loc::local(&path), TokenWidth::U16).unwrap();
    // Written in uneven pieces, as a tokenizer streaming documents would.
    for piece in tokens.chunks(7_919) {
        w.write(piece).unwrap();
    }
    assert_eq!(w.finish().unwrap(), tokens.len() as u64);
    let read = llmc_read(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(read.len(), tokens.len());
    assert!(read.iter().zip(&tokens).all(|(&a, &b)| a as u32 == b));
    // The end-of-text token of GPT-2 survives the uint16 round trip.
    let eot = dir.path().join("eot.bin");
    shards::tokens::write_tokens(&Loc::local(&eot), TokenWidth::U16, &[50256, 15496, 995, 50256]).unwrap();
    assert_eq!(llmc_read(&std::fs::read(&eot).unwrap()).unwrap(), [50256, 15496, 995, 50256]);
}

#[test]
fn llmc_rejects_the_u32_extension_and_grist_says_which_version() {
    let dir = tempfile::tempdir().unwrap();
    let loc = Loc::local(dir.path().join("wide.bin"));
    shards::tokens::write_tokens(&loc, TokenWidth::U32, &[70_000, 1]).unwrap();
    // llm.c refuses version 2 by its version check, rather than misreading it.
    assert_eq!(
        llmc_read(&std::fs::read(dir.path().join("wide.bin")).unwrap()).unwrap_err(),
        "Bad version in data file"
    );
    assert_eq!(shards::TokenShard::open(&loc).unwrap().to_vec().unwrap(), [70_000, 1]);
}
