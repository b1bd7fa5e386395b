//! The `llamacpp` backend: GGUF models run in-process by llama.cpp (through `llama-cpp-2`).
//!
//! - Choice scoring: one forward pass over the prompt; the log-probability of each option
//!   letter as the next token (the sum over its single-token spellings, `" A"` and `"A"`).
//! - Generation: temperature, top-p and seed sampling; the reply's mean token log-probability
//!   under the model's own (temperature 1) distribution is its confidence.
//!
//! Prompts use the model's own chat template when it has one (`chat_template = true`).
//! A model is loaded on its first call, so a replayed run (every call cached) never loads it;
//! backends on the same file (pool members answering in different modes, say) share one copy
//! in memory.

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use rgd_core::{
    ChoiceScores, ClozeRequest, GenerateRequest, Generation, LlmBackend, Message, OptionScores,
    ScoreRequest,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    /// The model file cannot be found or fetched.
    #[error(transparent)]
    Asset(#[from] rgd_assets::AssetError),
    /// llama.cpp could not load the file.
    #[error("{}: llama.cpp could not load this GGUF ({detail}); check the file (e.g. `rgd assets verify`)", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// What llama.cpp said.
        detail: String,
    },
    /// The prompt does not fit the context.
    #[error(
        "prompt of {tokens} tokens is longer than the context of {n_ctx} tokens (raise `n_ctx`)"
    )]
    TooLong {
        /// Prompt tokens.
        tokens: usize,
        /// Context size.
        n_ctx: u32,
    },
    /// A llama.cpp call failed.
    #[error("llama.cpp: {0}")]
    Llama(String),
    /// A setting out of range.
    #[error("{0}")]
    Config(String),
}

impl From<LlamaError> for rgd_core::Error {
    fn from(e: LlamaError) -> Self {
        match e {
            LlamaError::TooLong { .. } => rgd_core::Error::Unanswerable(e.to_string()),
            e => rgd_core::Error::component("backend llamacpp", e),
        }
    }
}

fn llama(e: impl std::fmt::Display) -> LlamaError {
    LlamaError::Llama(e.to_string())
}

/// A GGUF model run in-process by llama.cpp: letter scoring in one forward pass, and sampling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlamaCpp {
    /// An asset name (`smollm2-135m`, `gemma3-270m`, `qwen2.5-coder-0.5b`, `qwen2.5-coder-1.5b`)
    /// or a path to a `.gguf` file.
    pub model: String,
    /// Maximum context in tokens (64 to 131,072).
    #[serde(default = "default_ctx")]
    pub n_ctx: u32,
    /// CPU threads (0 = all cores; at most 1,024).
    #[serde(default)]
    pub threads: i32,
    /// Render prompts with the model's own chat template (when it has one).
    #[serde(default = "yes")]
    pub chat_template: bool,
    /// Generation requests decoded together, one pass per token for all of them (a thinking
    /// pool member's replies, a generator's calls); 1 decodes them one at a time (at most 256).
    #[serde(default = "default_sequences")]
    pub sequences: usize,
}

fn default_sequences() -> usize {
    16
}

fn default_ctx() -> u32 {
    2048
}
fn yes() -> bool {
    true
}

struct Loaded {
    model: LlamaModel,
    template: Option<llama_cpp_2::model::LlamaChatTemplate>,
    bos_text: String,
    /// Per letter A..T: its single-token spellings.
    letter_tokens: Vec<Vec<LlamaToken>>,
}

/// The backend (the config plus the lazily loaded model).
pub struct LlamaCppBackend {
    cfg: LlamaCpp,
    path: PathBuf,
    sha256: String,
    loaded: OnceLock<Result<Arc<Loaded>, String>>,
    /// llama.cpp contexts are not shared between threads: one call at a time per model.
    lock: Mutex<()>,
}

impl std::fmt::Debug for LlamaCppBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaCppBackend")
            .field("model", &self.cfg.model)
            .field("sha256", &self.sha256)
            .finish()
    }
}

mod generate;
mod model;

use generate::*;
use model::*;

impl LlmBackend for LlamaCppBackend {
    fn identity(&self) -> String {
        format!(
            "llamacpp:{}:{}",
            self.sha256,
            if self.cfg.chat_template {
                "chat"
            } else {
                "plain"
            }
        )
    }

    fn score_choices(&self, req: &ScoreRequest) -> rgd_core::Result<ChoiceScores> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let l = self.load()?;
        let t0 = std::time::Instant::now();
        let (ctx, n) = self.decode_prompt(l, &req.messages, &req.answer_prefix, 1)?;
        let last = n - 1;
        let logits = ctx.get_logits_ith(last as i32);
        let logprobs = (0..req.n_options.min(rgd_core::N_LETTERS))
            .map(|i| logsumexp(&log_softmax_at(logits, &l.letter_tokens[i])))
            .collect();
        Ok(ChoiceScores {
            logprobs,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// The prompt is decoded once; each option's tokens are decoded after it, scored, and
    /// removed from the KV cache again, so the prompt is never recomputed.
    fn score_options(&self, req: &ClozeRequest) -> rgd_core::Result<OptionScores> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let l = self.load()?;
        let t0 = std::time::Instant::now();
        let vocab = l.model.vocab();
        let conts: Vec<Vec<LlamaToken>> = req
            .options
            .iter()
            .map(|o| vocab.tokenize(format!(" {}", o.trim()).as_bytes(), false, false))
            .collect();
        let longest = conts.iter().map(Vec::len).max().unwrap_or(0);
        let (mut ctx, p) = self.decode_prompt(l, &req.messages, &req.answer_prefix, longest)?;
        let after_prompt = ctx.get_logits_ith((p - 1) as i32).to_vec();
        let mut batch = LlamaBatch::new(longest.max(1), 1);
        let mut logprobs = Vec::with_capacity(conts.len());
        for cont in &conts {
            let Some(&first) = cont.first() else {
                return Err(LlamaError::Llama("an option with no tokens".into()).into());
            };
            let mut lp = log_softmax_at(&after_prompt, &[first])[0];
            if cont.len() > 1 {
                batch.clear();
                for (k, t) in cont.iter().enumerate() {
                    // logits of token k predict token k + 1
                    batch
                        .add(*t, (p + k) as i32, &[0], k + 1 < cont.len())
                        .map_err(llama)?;
                }
                ctx.decode(&mut batch).map_err(llama)?;
                for (k, next) in cont.iter().enumerate().skip(1) {
                    lp += log_softmax_at(ctx.get_logits_ith((k - 1) as i32), &[*next])[0];
                }
                ctx.clear_kv_cache_seq(Some(0), Some(p as u32), None)
                    .map_err(llama)?;
            }
            logprobs.push(lp);
        }
        Ok(OptionScores {
            logprobs,
            tokens: conts.iter().map(Vec::len).collect(),
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    fn generate(&self, req: &GenerateRequest) -> rgd_core::Result<Generation> {
        self.generate_stream(req, &mut |_| {})
    }

    fn batch_size(&self) -> usize {
        self.cfg.sequences
    }

    /// The requests that fit the context are decoded together (see `generate_together`); one
    /// that does not is refused alone.
    fn generate_batch(&self, reqs: &[GenerateRequest]) -> Vec<rgd_core::Result<Generation>> {
        if reqs.len() <= 1 {
            return reqs.iter().map(|r| self.generate(r)).collect();
        }
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let l = match self.load() {
            Ok(l) => l,
            Err(e) => {
                let e = e.to_string();
                return reqs
                    .iter()
                    .map(|_| Err(LlamaError::Llama(e.clone()).into()))
                    .collect();
            }
        };
        let mut out: Vec<Option<rgd_core::Result<Generation>>> = Vec::with_capacity(reqs.len());
        let mut fit = Vec::new();
        for req in reqs {
            let toks = self.render(l, &req.messages, true).map(|mut p| {
                p.push_str(&req.assistant_prefix);
                self.tokens(l, &p)
            });
            match toks {
                Ok(t) if !t.is_empty() && t.len() + req.max_tokens <= self.cfg.n_ctx as usize => {
                    fit.push((out.len(), t));
                    out.push(None);
                }
                Ok(t) => out.push(Some(Err(LlamaError::TooLong {
                    tokens: t.len() + req.max_tokens,
                    n_ctx: self.cfg.n_ctx,
                }
                .into()))),
                Err(e) => out.push(Some(Err(e.into()))),
            }
        }
        let part: Vec<GenerateRequest> = fit.iter().map(|(i, _)| reqs[*i].clone()).collect();
        let prompts: Vec<Vec<LlamaToken>> = fit.iter().map(|(_, t)| t.clone()).collect();
        if !part.is_empty() {
            match self.generate_together(l, &part, &prompts) {
                Ok(gens) => {
                    for ((i, _), g) in fit.iter().zip(gens) {
                        out[*i] = Some(Ok(g));
                    }
                }
                Err(e) => {
                    let e = e.to_string();
                    for (i, _) in &fit {
                        out[*i] = Some(Err(LlamaError::Llama(e.clone()).into()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(LlamaError::Llama("a request left unanswered".into()).into())
                })
            })
            .collect()
    }

    /// Token by token: each piece is handed on as soon as its bytes are valid UTF-8.
    fn generate_stream(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> rgd_core::Result<Generation> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let l = self.load()?;
        let t0 = std::time::Instant::now();
        let mut prompt = self.render(l, &req.messages, true)?;
        prompt.push_str(&req.assistant_prefix);
        let toks = self.tokens(l, &prompt);
        if toks.len() + req.max_tokens > self.cfg.n_ctx as usize {
            return Err(LlamaError::TooLong {
                tokens: toks.len() + req.max_tokens,
                n_ctx: self.cfg.n_ctx,
            }
            .into());
        }
        let mut ctx = self.context(l, toks.len() + req.max_tokens)?;
        let mut batch = LlamaBatch::new(toks.len().max(1), 1);
        let last = toks.len() - 1;
        for (i, t) in toks.iter().enumerate() {
            batch.add(*t, i as i32, &[0], i == last).map_err(llama)?;
        }
        ctx.decode(&mut batch).map_err(llama)?;
        let mut sampler = sampler(req);
        let vocab = l.model.vocab();
        let mut out = Vec::new();
        let mut lp_sum = 0.0;
        let mut n = 0usize;
        let mut idx = batch.n_tokens() - 1;
        let mut pos = toks.len() as i32;
        if !req.assistant_prefix.is_empty() {
            on_text(&req.assistant_prefix);
        }
        let mut emitted = 0usize;
        while n < req.max_tokens {
            let token = sampler.sample(&ctx, idx);
            if vocab.is_eog(token) {
                break;
            }
            lp_sum += log_softmax_at(ctx.get_logits_ith(idx), &[token])[0];
            n += 1;
            out.extend(vocab.token_to_piece(token, false, None));
            // a token may end inside a UTF-8 sequence: hand on only whole characters
            let valid = match std::str::from_utf8(&out[emitted..]) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            if valid > 0 {
                on_text(&String::from_utf8_lossy(&out[emitted..emitted + valid]));
                emitted += valid;
            }
            batch.clear();
            batch.add(token, pos, &[0], true).map_err(llama)?;
            pos += 1;
            ctx.decode(&mut batch).map_err(llama)?;
            idx = 0;
        }
        if emitted < out.len() {
            on_text(&String::from_utf8_lossy(&out[emitted..]));
        }
        Ok(Generation {
            text: format!("{}{}", req.assistant_prefix, String::from_utf8_lossy(&out)),
            mean_logprob: if n == 0 { 0.0 } else { lp_sum / n as f64 },
            n_tokens: n,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }
}

/// Most sequences llama.cpp decodes together (`LLAMA_MAX_SEQ`).
pub const MAX_SEQUENCES: usize = 256;
/// The largest context rgd asks for (its KV cache must fit in memory before a call is made).
pub const MAX_CTX: u32 = 131_072;

impl LlamaCpp {
    /// The sizes checked before the model is loaded: a value llama.cpp would abort on (or
    /// that silently becomes another) is an error naming the field.
    fn check(&self) -> Result<(), LlamaError> {
        let bad = |field: &str, msg: String| Err(LlamaError::Config(format!("`{field}`: {msg}")));
        if !(1..=MAX_SEQUENCES).contains(&self.sequences) {
            return bad(
                "sequences",
                format!(
                    "{} is not in 1..={MAX_SEQUENCES} (llama.cpp's most sequences)",
                    self.sequences
                ),
            );
        }
        if !(64..=MAX_CTX).contains(&self.n_ctx) {
            return bad(
                "n_ctx",
                format!("{} is not in 64..={MAX_CTX} tokens", self.n_ctx),
            );
        }
        if !(0..=1024).contains(&self.threads) {
            return bad(
                "threads",
                format!("{} is not in 0..=1024 (0: every core)", self.threads),
            );
        }
        Ok(())
    }
}

fn build(c: LlamaCpp) -> Result<Box<dyn LlmBackend>, LlamaError> {
    c.check()?;
    Ok(Box::new(c.open()?))
}

rgd_core::register!(backend, "llamacpp", LlamaCpp, build);
