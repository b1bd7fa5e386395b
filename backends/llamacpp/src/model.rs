//! Loading a model (shared between backends on the same file), prompts, tokens, contexts and
//! the first forward pass; the log-probability helpers of scoring.

use super::*;

/// The models in memory, by file hash and chat-template use: a second backend on the same file
/// shares the first one's copy (a 1.5B model is 1.8 GB) as long as either is alive.
pub(crate) type Shared = Mutex<HashMap<(String, bool), Weak<Loaded>>>;

pub(crate) fn models() -> &'static Shared {
    static M: OnceLock<Shared> = OnceLock::new();
    M.get_or_init(Default::default)
}

pub(crate) fn backend() -> Result<&'static LlamaBackend, LlamaError> {
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

pub(crate) fn threads(n: i32) -> i32 {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get() as i32)
            .unwrap_or(2)
    }
}

pub(crate) fn log_softmax_at(logits: &[f32], ids: &[LlamaToken]) -> Vec<f64> {
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

pub(crate) fn logsumexp(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NEG_INFINITY;
    }
    let mx = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    mx + xs.iter().map(|x| (x - mx).exp()).sum::<f64>().ln()
}

impl LlamaCppBackend {
    pub(crate) fn load(&self) -> Result<&Loaded, LlamaError> {
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

    pub(crate) fn load_file(&self) -> Result<Loaded, String> {
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

    pub(crate) fn render(
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

    pub(crate) fn tokens(&self, l: &Loaded, prompt: &str) -> Vec<LlamaToken> {
        let vocab = l.model.vocab();
        // a template that writes the BOS text itself must not get a second BOS
        let add_special = l.bos_text.is_empty() || !prompt.starts_with(&l.bos_text);
        vocab.tokenize(prompt.as_bytes(), add_special, true)
    }

    pub(crate) fn context<'a>(
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
    pub(crate) fn decode_prompt<'a>(
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
