//! The GPT's shape and its parameters: configuration and presets (GPT-3's Table 2.1, GPT-2
//! 124M, small test sizes), the padded vocabulary, and llm.c's layout of every parameter in
//! one allocation, carved by a size table, with GPT-2's initialization.
//!
//! Layout (llm.c's `ParameterTensors` order; `Vp` the padded vocabulary, `T` the context, `L`
//! layers, `C` channels): wte (Vp, C), wpe (T, C), ln1w (L, C), ln1b (L, C), qkvw (L, 3C, C),
//! qkvb (L, 3C), attprojw (L, C, C), attprojb (L, C), ln2w (L, C), ln2b (L, C), fcw (L, 4C, C),
//! fcb (L, 4C), fcprojw (L, C, 4C), fcprojb (L, C), lnfw (C), lnfb (C). Matrices are stored
//! (out, in), as PyTorch's `nn.Linear`; the output embedding is tied to wte.

/// A GPT's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptConfig {
    /// Maximum sequence length (positions).
    pub max_seq_len: usize,
    /// Vocabulary size (GPT-2: 50257).
    pub vocab_size: usize,
    /// Vocabulary padded for speed (a multiple of `pad_to`); padded rows are never sampled.
    pub padded_vocab_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub channels: usize,
    /// GPT-3's alternating attention: when set, odd layers attend only to the last `band`
    /// positions (locally banded sparse attention); even layers stay dense.
    pub attention_band: Option<usize>,
}

/// GPT-2's vocabulary.
pub const GPT2_VOCAB: usize = 50257;

impl GptConfig {
    /// A config with the vocabulary padded up to a multiple of `pad_to` (llm.c uses 128:
    /// 50257 -> 50304).
    pub fn new(
        max_seq_len: usize,
        vocab_size: usize,
        num_layers: usize,
        num_heads: usize,
        channels: usize,
        pad_to: usize,
    ) -> GptConfig {
        let pad = pad_to.max(1);
        GptConfig {
            max_seq_len,
            vocab_size,
            padded_vocab_size: vocab_size.div_ceil(pad) * pad,
            num_layers,
            num_heads,
            channels,
            attention_band: None,
        }
    }

    /// A named preset: GPT-3's eight sizes (`gpt3-small` ... `gpt3-175b`, Table 2.1, context
    /// 2048), `gpt2-124m` (context 1024), and `tiny`/`small` for tests. Two rows of Table 2.1 do
    /// not multiply out: 13B's d_model 5140 is not a multiple of its 40 heads (5120 = 40 x 128
    /// is used), and XL's 24 heads of 128 make 3072, not its d_model 2048 (16 heads of 128 are
    /// used, keeping d_head 128).
    pub fn preset(name: &str) -> Option<GptConfig> {
        let (t, l, h, c) = match name {
            "gpt3-small" => (2048, 12, 12, 768),
            "gpt3-medium" => (2048, 24, 16, 1024),
            "gpt3-large" => (2048, 24, 16, 1536),
            "gpt3-xl" => (2048, 24, 16, 2048),
            "gpt3-2.7b" => (2048, 32, 32, 2560),
            "gpt3-6.7b" => (2048, 32, 32, 4096),
            "gpt3-13b" => (2048, 40, 40, 5120),
            "gpt3-175b" => (2048, 96, 96, 12288),
            "gpt2-124m" => (1024, 12, 12, 768),
            "small" => (256, 4, 4, 256),
            "tiny" => (64, 2, 4, 64),
            _ => return None,
        };
        Some(GptConfig::new(t, GPT2_VOCAB, l, h, c, 128))
    }

    /// The preset names, in size order.
    pub const PRESETS: [&'static str; 11] = [
        "tiny",
        "small",
        "gpt2-124m",
        "gpt3-small",
        "gpt3-medium",
        "gpt3-large",
        "gpt3-xl",
        "gpt3-2.7b",
        "gpt3-6.7b",
        "gpt3-13b",
        "gpt3-175b",
    ];

    /// The attention band of layer `i` (`None`: dense).
    pub fn band_of(&self, layer: usize) -> Option<usize> {
        self.attention_band.filter(|_| layer % 2 == 1)
    }

    /// Channels per head.
    pub fn head_size(&self) -> usize {
        self.channels / self.num_heads.max(1)
    }

    /// Checks the shape: heads divide channels, everything positive.
    pub fn validate(&self) -> Result<(), String> {
        let c = self;
        if c.max_seq_len == 0 || c.vocab_size == 0 || c.num_layers == 0 || c.num_heads == 0 || c.channels == 0 {
            return Err("every model dimension must be positive".into());
        }
        if !c.channels.is_multiple_of(c.num_heads) {
            return Err(format!("{} channels do not split into {} heads", c.channels, c.num_heads));
        }
        if c.attention_band == Some(0) {
            return Err("an attention band must hold at least one position".into());
        }
        if c.padded_vocab_size < c.vocab_size {
            return Err("the padded vocabulary is smaller than the vocabulary".into());
        }
        Ok(())
    }

    /// Element count of every parameter tensor, in layout order.
    pub fn param_sizes(&self) -> [(Param, usize); 16] {
        let (vp, t, l, c) = (self.padded_vocab_size, self.max_seq_len, self.num_layers, self.channels);
        [
            (Param::Wte, vp * c),
            (Param::Wpe, t * c),
            (Param::Ln1W, l * c),
            (Param::Ln1B, l * c),
            (Param::QkvW, l * 3 * c * c),
            (Param::QkvB, l * 3 * c),
            (Param::AttProjW, l * c * c),
            (Param::AttProjB, l * c),
            (Param::Ln2W, l * c),
            (Param::Ln2B, l * c),
            (Param::FcW, l * 4 * c * c),
            (Param::FcB, l * 4 * c),
            (Param::FcProjW, l * c * 4 * c),
            (Param::FcProjB, l * c),
            (Param::LnfW, c),
            (Param::LnfB, c),
        ]
    }

    /// Parameters in all (padded vocabulary).
    pub fn num_params(&self) -> usize {
        self.param_sizes().iter().map(|p| p.1).sum()
    }

    /// Parameters without the vocabulary padding (what Hugging Face counts).
    pub fn num_params_unpadded(&self) -> usize {
        self.num_params() - (self.padded_vocab_size - self.vocab_size) * self.channels
    }
}

/// The parameter tensors, in layout order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Param {
    Wte,
    Wpe,
    Ln1W,
    Ln1B,
    QkvW,
    QkvB,
    AttProjW,
    AttProjB,
    Ln2W,
    Ln2B,
    FcW,
    FcB,
    FcProjW,
    FcProjB,
    LnfW,
    LnfB,
}

/// Every parameter in one allocation, carved by the size table.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub config: GptConfig,
    pub data: Vec<f32>,
    offsets: [(usize, usize); 16],
}

impl Params {
    /// All zeros.
    pub fn zeros(config: GptConfig) -> Params {
        let sizes = config.param_sizes();
        let mut offsets = [(0, 0); 16];
        let mut at = 0;
        for (i, (_, n)) in sizes.iter().enumerate() {
            offsets[i] = (at, *n);
            at += n;
        }
        Params { config, data: vec![0.0; at], offsets }
    }

    /// GPT-2's initialization, deterministic from `seed`: weights N(0, 0.02), the residual
    /// projections (attprojw, fcprojw) N(0, 0.02 / sqrt(2 L)), biases 0, LayerNorm gains 1;
    /// the vocabulary's padding rows 0.
    pub fn gpt2_init(config: GptConfig, seed: u64) -> Params {
        let mut p = Params::zeros(config);
        let residual = 0.02 / (2.0 * config.num_layers as f64).sqrt();
        for (k, (param, _)) in config.param_sizes().iter().enumerate() {
            let (at, n) = p.offsets[k];
            let t = &mut p.data[at..at + n];
            match param {
                Param::Ln1W | Param::Ln2W | Param::LnfW => t.fill(1.0),
                Param::Ln1B
                | Param::Ln2B
                | Param::LnfB
                | Param::QkvB
                | Param::AttProjB
                | Param::FcB
                | Param::FcProjB => {}
                Param::AttProjW | Param::FcProjW => normal_fill(t, residual, seed, k as u64),
                Param::Wte => {
                    let real = config.vocab_size * config.channels;
                    normal_fill(&mut t[..real], 0.02, seed, k as u64);
                }
                Param::Wpe | Param::QkvW | Param::FcW => normal_fill(t, 0.02, seed, k as u64),
            }
        }
        p
    }

    /// One tensor.
    pub fn get(&self, param: Param) -> &[f32] {
        let (at, n) = self.offsets[param as usize];
        &self.data[at..at + n]
    }

    /// One tensor, mutably.
    pub fn get_mut(&mut self, param: Param) -> &mut [f32] {
        let (at, n) = self.offsets[param as usize];
        &mut self.data[at..at + n]
    }
}

/// Fills `out` with N(0, std) draws from a counter-based stream of (seed, tensor), by the
/// Box-Muller transform over SplitMix64: the same values on any machine and thread count.
fn normal_fill(out: &mut [f32], std: f64, seed: u64, tensor: u64) {
    let mut state = seed ^ tensor.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    for pair in out.chunks_mut(2) {
        let (u1, u2) = (next(), next());
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let th = std::f64::consts::TAU * u2;
        pair[0] = (r * th.cos()) as f32;
        if pair.len() > 1 {
            pair[1] = (r * th.sin()) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_124m_has_its_known_parameter_counts() {
        let c = GptConfig::preset("gpt2-124m").unwrap();
        assert_eq!(c.padded_vocab_size, 50304);
        // llm.c's train_gpt2 prints 124475904 (padded); Hugging Face counts 124439808.
        assert_eq!(c.num_params(), 124_475_904);
        assert_eq!(c.num_params_unpadded(), 124_439_808);
    }

    #[test]
    fn gpt3_presets_match_table_2_1() {
        // Table 2.1's parameter counts, to the precision the paper gives them (it excludes
        // nothing: embeddings included, vocabulary 50257, context 2048).
        for (name, billions, tolerance) in [
            ("gpt3-small", 0.125, 0.01),
            ("gpt3-medium", 0.350, 0.01),
            ("gpt3-large", 0.760, 0.01),
            ("gpt3-xl", 1.3, 0.05),
            ("gpt3-2.7b", 2.7, 0.05),
            ("gpt3-6.7b", 6.7, 0.1),
            ("gpt3-13b", 13.0, 0.2),
            ("gpt3-175b", 175.0, 1.0),
        ] {
            let c = GptConfig::preset(name).unwrap();
            c.validate().unwrap();
            let got = c.num_params_unpadded() as f64 / 1e9;
            assert!((got - billions).abs() <= tolerance, "{name}: {got:.3}B vs {billions}B");
        }
        assert_eq!(GptConfig::preset("gpt3-13b").unwrap().head_size(), 128);
        assert_eq!(GptConfig::preset("gpt3-xl").unwrap().head_size(), 128);
        for name in GptConfig::PRESETS {
            assert!(GptConfig::preset(name).is_some(), "{name}");
        }
        assert!(GptConfig::new(64, 100, 2, 3, 64, 64).validate().is_err(), "3 heads do not divide 64 channels");
    }

    #[test]
    fn init_is_seeded_scaled_and_leaves_padding_zero() {
        let c = GptConfig::new(32, 1000, 4, 4, 64, 128);
        let p = Params::gpt2_init(c, 7);
        assert_eq!(p.data.len(), c.num_params());
        assert_eq!(p.data, Params::gpt2_init(c, 7).data, "deterministic");
        assert_ne!(p.data, Params::gpt2_init(c, 8).data, "seeded");
        let std = |t: &[f32]| (t.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / t.len() as f64).sqrt();
        assert!((std(p.get(Param::QkvW)) - 0.02).abs() < 0.001);
        let want = 0.02 / (8f64).sqrt();
        assert!((std(p.get(Param::FcProjW)) - want).abs() < 0.0005, "{}", std(p.get(Param::FcProjW)));
        assert!(p.get(Param::Ln1W).iter().all(|&x| x == 1.0) && p.get(Param::FcB).iter().all(|&x| x == 0.0));
        let wte = p.get(Param::Wte);
        assert!(wte[1000 * 64..].iter().all(|&x| x == 0.0), "padding rows are zero");
        assert!(wte[..1000 * 64].iter().any(|&x| x != 0.0));
    }
}
