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
    /// Maximum context in tokens.
    #[serde(default = "default_ctx")]
    pub n_ctx: u32,
    /// CPU threads (0 = all cores).
    #[serde(default)]
    pub threads: i32,
    /// Render prompts with the model's own chat template (when it has one).
    #[serde(default = "yes")]
    pub chat_template: bool,
    /// Generation requests decoded together, one pass per token for all of them (a thinking
    /// pool member's replies, a generator's calls); 1 decodes them one at a time.
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

/// The models in memory, by file hash and chat-template use: a second backend on the same file
/// shares the first one's copy (a 1.5B model is 1.8 GB) as long as either is alive.
type Shared = Mutex<HashMap<(String, bool), Weak<Loaded>>>;

fn models() -> &'static Shared {
    static M: OnceLock<Shared> = OnceLock::new();
    M.get_or_init(Default::default)
}

fn backend() -> Result<&'static LlamaBackend, LlamaError> {
    static B: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    B.get_or_init(|| {
        let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
        if std::env::var_os("RGD_LLAMA_LOG").is_none() {
            b.void_logs();
        }
        Ok(b)
    })
    .as_ref()
    .map_err(|e| LlamaError::Llama(e.clone()))
}

impl LlamaCpp {
    /// Resolve the model file and its identity (an asset's pinned hash, or the file's hash).
    pub fn open(&self) -> Result<LlamaCppBackend, LlamaError> {
        let (path, sha256) = if let Some(h) = rgd_assets::sha256_of(&self.model, "model.gguf") {
            let path = rgd_assets::assets_dir()
                .join(&self.model)
                .join("model.gguf");
            (path, h.to_string())
        } else {
            let path = PathBuf::from(&self.model);
            let (h, _) = rgd_assets::hash_file(&path)?;
            (path, h)
        };
        Ok(LlamaCppBackend {
            cfg: self.clone(),
            path,
            sha256,
            loaded: OnceLock::new(),
            lock: Mutex::new(()),
        })
    }
}

fn threads(n: i32) -> i32 {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get() as i32)
            .unwrap_or(2)
    }
}

fn log_softmax_at(logits: &[f32], ids: &[LlamaToken]) -> Vec<f64> {
    let mx = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = mx
        + logits
            .iter()
            .map(|&l| (l as f64 - mx).exp())
            .sum::<f64>()
            .ln();
    ids.iter()
        .map(|t| logits[t.0 as usize] as f64 - lse)
        .collect()
}

fn logsumexp(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NEG_INFINITY;
    }
    let mx = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    mx + xs.iter().map(|x| (x - mx).exp()).sum::<f64>().ln()
}

impl LlamaCppBackend {
    fn load(&self) -> Result<&Loaded, LlamaError> {
        self.loaded
            .get_or_init(|| {
                // held while loading, so two backends on one file never load it twice
                let mut shared = models().lock().unwrap_or_else(|p| p.into_inner());
                let key = (self.sha256.clone(), self.cfg.chat_template);
                if let Some(l) = shared.get(&key).and_then(Weak::upgrade) {
                    return Ok(l);
                }
                let l = Arc::new(self.load_file()?);
                shared.insert(key, Arc::downgrade(&l));
                Ok(l)
            })
            .as_ref()
            .map(|l| l.as_ref())
            .map_err(|e| LlamaError::Llama(e.clone()))
    }

    fn load_file(&self) -> Result<Loaded, String> {
        let b = backend().map_err(|e| e.to_string())?;
        if !self.path.exists() {
            return Err(match rgd_assets::spec(&self.cfg.model) {
                Ok(_) => rgd_assets::file(&self.cfg.model, "model.gguf")
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                Err(_) => format!("{}: no such model file", self.path.display()),
            });
        }
        let model = LlamaModel::load_from_file(b, &self.path, &LlamaModelParams::default())
            .map_err(|e| {
                LlamaError::Load {
                    path: self.path.clone(),
                    detail: e.to_string(),
                }
                .to_string()
            })?;
        let template = if self.cfg.chat_template {
            model.chat_template(None).ok()
        } else {
            None
        };
        let vocab = model.vocab();
        let bos_text =
            String::from_utf8_lossy(&vocab.token_to_piece(vocab.bos(), true, None)).into_owned();
        let letter_tokens = (0..rgd_core::N_LETTERS)
            .map(|i| {
                let l = (b'A' + i as u8) as char;
                let mut v: Vec<LlamaToken> = Vec::new();
                for s in [format!(" {l}"), l.to_string()] {
                    let t = vocab.tokenize(s.as_bytes(), false, false);
                    if t.len() == 1 && !v.contains(&t[0]) {
                        v.push(t[0]);
                    }
                }
                v
            })
            .collect();
        Ok(Loaded {
            model,
            template,
            bos_text,
            letter_tokens,
        })
    }

    fn render(
        &self,
        l: &Loaded,
        messages: &[Message],
        assistant_next: bool,
    ) -> Result<String, LlamaError> {
        if let Some(t) = &l.template {
            let chat = messages
                .iter()
                .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(llama)?;
            if let Ok(s) = l.model.apply_chat_template(t, &chat, assistant_next) {
                return Ok(s);
            }
        }
        // no (usable) template: plain text, one message per paragraph
        let mut s = messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        s.push('\n');
        Ok(s)
    }

    fn tokens(&self, l: &Loaded, prompt: &str) -> Vec<LlamaToken> {
        let vocab = l.model.vocab();
        // a template that writes the BOS text itself must not get a second BOS
        let add_special = l.bos_text.is_empty() || !prompt.starts_with(&l.bos_text);
        vocab.tokenize(prompt.as_bytes(), add_special, true)
    }

    fn context<'a>(
        &self,
        l: &'a Loaded,
        n: usize,
    ) -> Result<llama_cpp_2::context::LlamaContext<'a>, LlamaError> {
        let n_ctx = (n as u32).div_ceil(256) * 256;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx.max(256)))
            .with_n_batch(n_ctx.max(256))
            .with_n_threads(threads(self.cfg.threads))
            .with_n_threads_batch(threads(self.cfg.threads));
        l.model.new_context(backend()?, params).map_err(llama)
    }

    /// Render `messages` for the assistant's turn, append `answer_prefix` and decode it in a
    /// new context with room for `extra` more tokens: (the context, the prompt's length); the
    /// logits of the prompt's last token are at index length − 1.
    fn decode_prompt<'a>(
        &self,
        l: &'a Loaded,
        messages: &[Message],
        answer_prefix: &str,
        extra: usize,
    ) -> Result<(llama_cpp_2::context::LlamaContext<'a>, usize), LlamaError> {
        let mut prompt = self.render(l, messages, true)?;
        prompt.push_str(answer_prefix);
        let toks = self.tokens(l, &prompt);
        if toks.is_empty() || toks.len() + extra > self.cfg.n_ctx as usize {
            return Err(LlamaError::TooLong {
                tokens: toks.len() + extra,
                n_ctx: self.cfg.n_ctx,
            });
        }
        let mut ctx = self.context(l, toks.len() + extra)?;
        let mut batch = LlamaBatch::new(toks.len(), 1);
        let last = toks.len() - 1;
        for (i, t) in toks.iter().enumerate() {
            batch.add(*t, i as i32, &[0], i == last).map_err(llama)?;
        }
        ctx.decode(&mut batch).map_err(llama)?;
        Ok((ctx, toks.len()))
    }

    /// A second handle on the same model file (sharing the model in memory, with its own lock:
    /// the two can run calls at once).
    pub fn open_again(&self) -> LlamaCppBackend {
        LlamaCppBackend {
            cfg: self.cfg.clone(),
            path: self.path.clone(),
            sha256: self.sha256.clone(),
            loaded: OnceLock::new(),
            lock: Mutex::new(()),
        }
    }

    /// Whether both backends have loaded their model and hold the same copy of it.
    pub fn shares_model_with(&self, other: &LlamaCppBackend) -> bool {
        match (self.loaded.get(), other.loaded.get()) {
            (Some(Ok(a)), Some(Ok(b))) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Model file path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

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
        self.cfg.sequences.max(1)
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

/// One sequence of a batched generation.
struct Sequence {
    sampler: LlamaSampler,
    out: Vec<u8>,
    lp_sum: f64,
    n: usize,
    max_tokens: usize,
    /// Its next position, and the index of its logits in the last decoded batch.
    pos: i32,
    idx: i32,
    done: bool,
    seconds: f64,
}

fn sampler(req: &GenerateRequest) -> LlamaSampler {
    if req.temperature <= 0.0 {
        LlamaSampler::greedy()
    } else {
        LlamaSampler::chain_simple([
            LlamaSampler::top_p(req.top_p as f32, 1),
            LlamaSampler::temp(req.temperature as f32),
            LlamaSampler::dist(req.seed as u32),
        ])
    }
}

impl LlamaCppBackend {
    /// Decode the prompts together: their common token prefix once (then copied to every
    /// sequence's cells), then each one's own tokens in one batch, then one token of every
    /// unfinished sequence per pass. Each reply's `seconds` is its share of the wall time (of
    /// the prompt pass by its tokens, of each later pass equally among the sequences in it).
    fn generate_together(
        &self,
        l: &Loaded,
        reqs: &[GenerateRequest],
        prompts: &[Vec<LlamaToken>],
    ) -> Result<Vec<Generation>, LlamaError> {
        let n = reqs.len();
        let t0 = std::time::Instant::now();
        let shortest = prompts.iter().map(Vec::len).min().unwrap_or(0);
        // every sequence keeps at least its last prompt token of its own (its logits)
        let shared = prompts
            .iter()
            .skip(1)
            .map(|p| {
                p.iter()
                    .zip(&prompts[0])
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .min()
            .unwrap_or(0)
            .min(shortest.saturating_sub(1));
        let own: usize = prompts.iter().map(|p| p.len() - shared).sum();
        // one stream of cells per sequence, each as long as the longest sequence: a token
        // attends to its own sequence's cells only (one shared stream measured the same)
        let longest = prompts
            .iter()
            .zip(reqs)
            .map(|(p, r)| p.len() + r.max_tokens)
            .max()
            .unwrap_or(1);
        let n_ctx = (longest as u32).div_ceil(256).max(1) * 256 * n as u32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch((shared + own).max(n) as u32)
            .with_n_seq_max(n as u32)
            .with_kv_unified(false)
            .with_n_threads(threads(self.cfg.threads))
            .with_n_threads_batch(threads(self.cfg.threads));
        let mut ctx = l.model.new_context(backend()?, params).map_err(llama)?;
        let mut batch = LlamaBatch::new((shared + own).max(n), 1);
        if shared > 0 {
            for (i, t) in prompts[0][..shared].iter().enumerate() {
                batch.add(*t, i as i32, &[0], false).map_err(llama)?;
            }
            ctx.decode(&mut batch).map_err(llama)?;
            for s in 1..n as i32 {
                ctx.copy_kv_cache_seq(0, s, None, None).map_err(llama)?;
            }
            batch.clear();
        }
        let mut seqs = Vec::with_capacity(n);
        for (s, (req, p)) in reqs.iter().zip(prompts).enumerate() {
            for (i, t) in p.iter().enumerate().skip(shared) {
                batch
                    .add(*t, i as i32, &[s as i32], i + 1 == p.len())
                    .map_err(llama)?;
            }
            seqs.push(Sequence {
                sampler: sampler(req),
                out: Vec::new(),
                lp_sum: 0.0,
                n: 0,
                max_tokens: req.max_tokens,
                pos: p.len() as i32,
                idx: batch.n_tokens() - 1,
                done: false,
                seconds: 0.0,
            });
        }
        ctx.decode(&mut batch).map_err(llama)?;
        let prompt_secs = t0.elapsed().as_secs_f64();
        for (s, p) in seqs.iter_mut().zip(prompts) {
            let tokens = (p.len() - shared) as f64 + shared as f64 / n as f64;
            s.seconds = prompt_secs * tokens / (shared + own) as f64;
        }
        let vocab = l.model.vocab();
        loop {
            let step = std::time::Instant::now();
            batch.clear();
            let mut active = Vec::new();
            for (k, s) in seqs.iter_mut().enumerate() {
                if s.done {
                    continue;
                }
                if s.n >= s.max_tokens {
                    s.done = true;
                    continue;
                }
                let token = s.sampler.sample(&ctx, s.idx);
                if vocab.is_eog(token) {
                    s.done = true;
                    continue;
                }
                s.lp_sum += log_softmax_at(ctx.get_logits_ith(s.idx), &[token])[0];
                s.n += 1;
                s.out.extend(vocab.token_to_piece(token, false, None));
                if s.n >= s.max_tokens {
                    s.done = true;
                    continue;
                }
                s.idx = batch.n_tokens();
                batch.add(token, s.pos, &[k as i32], true).map_err(llama)?;
                s.pos += 1;
                active.push(k);
            }
            if active.is_empty() {
                break;
            }
            ctx.decode(&mut batch).map_err(llama)?;
            let share = step.elapsed().as_secs_f64() / active.len() as f64;
            for k in active {
                seqs[k].seconds += share;
            }
        }
        Ok(seqs
            .into_iter()
            .zip(reqs)
            .map(|(s, req)| Generation {
                text: format!(
                    "{}{}",
                    req.assistant_prefix,
                    String::from_utf8_lossy(&s.out)
                ),
                mean_logprob: if s.n == 0 { 0.0 } else { s.lp_sum / s.n as f64 },
                n_tokens: s.n,
                seconds: s.seconds,
            })
            .collect())
    }
}

fn build(c: LlamaCpp) -> Result<Box<dyn LlmBackend>, LlamaError> {
    Ok(Box::new(c.open()?))
}

rgd_core::register!(backend, "llamacpp", LlamaCpp, build);
