//! The PyTorch reference file `golden/gpt_reference.bin` (written by `scripts/torch-reference.py`):
//! a u32 header length, a JSON header naming the arrays, then the arrays (f32 or i32, little
//! endian). Shared by `torch_parity.rs` and `examples/gpu_check.rs`.
#![allow(clippy::unwrap_used, dead_code)]

pub const BYTES: &[u8] = include_bytes!("../golden/gpt_reference.bin");

pub struct Reference {
    pub header: serde_json::Value,
    pub f32s: std::collections::BTreeMap<String, Vec<f32>>,
    pub i32s: std::collections::BTreeMap<String, Vec<i32>>,
}

pub fn load() -> Reference {
    let bytes = BYTES;
    let h = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[4..4 + h]).unwrap();
    let mut at = 4 + h;
    let (mut f32s, mut i32s) = (Default::default(), Default::default());
    for a in header["arrays"].as_array().unwrap() {
        let n = a["len"].as_u64().unwrap() as usize;
        let raw = &bytes[at..at + 4 * n];
        at += 4 * n;
        let name = a["name"].as_str().unwrap().to_string();
        if a["dtype"] == "f32" {
            let v = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            std::collections::BTreeMap::insert(&mut f32s, name, v);
        } else {
            let v = raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
            std::collections::BTreeMap::insert(&mut i32s, name, v);
        }
    }
    assert_eq!(at, bytes.len());
    Reference { header, f32s, i32s }
}

/// The largest error |got - want| / max(|want|, 1), and where.
pub fn worst_error(got: &[f32], want: &[f32]) -> (f32, usize) {
    assert_eq!(got.len(), want.len(), "lengths");
    let mut worst = (0.0f32, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        if err > worst.0 || err.is_nan() {
            worst = (if err.is_nan() { f32::INFINITY } else { err }, i);
        }
    }
    worst
}

pub fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    let worst = worst_error(got, want);
    assert!(
        worst.0 <= tol,
        "{what}[{}]: grist {} vs PyTorch {} (error {})",
        worst.1,
        got[worst.1],
        want[worst.1],
        worst.0
    );
}
