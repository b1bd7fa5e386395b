//! Backends and embedders behind the cache: each call is looked up first, and a stored answer
//! is checked against its request before it is used.

use super::*;

/// A stored letter score fits its request: one finite log-probability per option.
pub(crate) fn fits_score(req: &ScoreRequest, r: &ChoiceScores) -> Result<(), String> {
    if r.logprobs.len() != req.n_options {
        return Err(format!(
            "{} log-probabilities for {} options",
            r.logprobs.len(),
            req.n_options
        ));
    }
    if let Some(v) = r.logprobs.iter().find(|v| !v.is_finite() || **v > 1e-9) {
        return Err(format!("log-probability {v} is not a finite number <= 0"));
    }
    if !(r.seconds >= 0.0 && r.seconds.is_finite()) {
        return Err(format!("seconds {} is not a finite number >= 0", r.seconds));
    }
    Ok(())
}

/// A stored option score fits its request: per option a finite log-likelihood <= 0 and at
/// least one token.
pub(crate) fn fits_options(req: &ClozeRequest, r: &OptionScores) -> Result<(), String> {
    let n = req.options.len();
    if r.logprobs.len() != n || r.tokens.len() != n {
        return Err(format!(
            "{} log-likelihoods and {} token counts for {n} options",
            r.logprobs.len(),
            r.tokens.len()
        ));
    }
    if let Some(v) = r.logprobs.iter().find(|v| !v.is_finite() || **v > 1e-9) {
        return Err(format!("log-likelihood {v} is not a finite number <= 0"));
    }
    if r.tokens.contains(&0) {
        return Err("an option of 0 tokens".into());
    }
    if !(r.seconds >= 0.0 && r.seconds.is_finite()) {
        return Err(format!("seconds {} is not a finite number >= 0", r.seconds));
    }
    Ok(())
}

/// A stored generation is well formed: a finite confidence <= 0, a non-negative duration.
pub(crate) fn fits_generation(g: &Generation) -> Result<(), String> {
    if g.mean_logprob.is_nan() || g.mean_logprob > 1e-9 {
        return Err(format!(
            "mean_logprob {} is not a number <= 0",
            g.mean_logprob
        ));
    }
    if !(g.seconds >= 0.0 && g.seconds.is_finite()) {
        return Err(format!("seconds {} is not a finite number >= 0", g.seconds));
    }
    Ok(())
}

/// An LLM backend whose every call goes through the cache.
#[derive(Debug)]
pub struct CachedBackend {
    /// The backend.
    pub inner: Box<dyn LlmBackend>,
    /// The cache.
    pub cache: CallCache,
}

impl LlmBackend for CachedBackend {
    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn score_choices(&self, req: &ScoreRequest) -> rgd_core::Result<ChoiceScores> {
        self.cache.call(
            &self.inner.identity(),
            "score",
            req,
            |r| fits_score(req, r),
            || self.inner.score_choices(req),
        )
    }
    fn score_options(&self, req: &ClozeRequest) -> rgd_core::Result<OptionScores> {
        self.cache.call(
            &self.inner.identity(),
            "cloze",
            req,
            |r| fits_options(req, r),
            || self.inner.score_options(req),
        )
    }
    fn generate(&self, req: &GenerateRequest) -> rgd_core::Result<Generation> {
        self.cache.call(
            &self.inner.identity(),
            "generate",
            req,
            fits_generation,
            || self.inner.generate(req),
        )
    }
    fn generate_stream(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> rgd_core::Result<Generation> {
        // the same cache entry as `generate`: a cached reply comes back in one piece
        let mut streamed = false;
        let g = self.cache.call(
            &self.inner.identity(),
            "generate",
            req,
            fits_generation,
            || {
                streamed = true;
                self.inner.generate_stream(req, on_text)
            },
        )?;
        if !streamed {
            on_text(&g.text);
        }
        Ok(g)
    }
    fn parallelism(&self) -> usize {
        self.inner.parallelism()
    }
    fn batch_size(&self) -> usize {
        self.inner.batch_size()
    }
    /// The stored replies are served; the others are decoded together by the backend.
    fn generate_batch(&self, reqs: &[GenerateRequest]) -> Vec<rgd_core::Result<Generation>> {
        self.cache.call_batch(
            &self.inner.identity(),
            "generate",
            reqs,
            |_, g| fits_generation(g),
            |missing| {
                let part: Vec<GenerateRequest> = missing.iter().map(|&i| reqs[i].clone()).collect();
                self.inner.generate_batch(&part)
            },
        )
    }
}

/// An embedder whose every text goes through the cache (one entry per text, so a batch
/// with a few new texts embeds only those).
#[derive(Debug)]
pub struct CachedEmbedder {
    /// The embedder.
    pub inner: Box<dyn Embedder>,
    /// The cache.
    pub cache: CallCache,
}

impl Embedder for CachedEmbedder {
    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn embed(&self, texts: &[&str]) -> rgd_core::Result<Array2<f32>> {
        let id = self.inner.identity();
        let mut found: Vec<Option<Vec<f32>>> = Vec::with_capacity(texts.len());
        let mut todo = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let key = CallCache::key(&id, "embed", &serde_json::to_string(t).unwrap_or_default());
            let hit = if self.cache.mode() == CacheMode::Off {
                None
            } else {
                self.cache
                    .get_raw(&key)?
                    .and_then(|r| serde_json::from_str::<Vec<f32>>(&r).ok())
            };
            if hit.as_ref().is_some_and(|v| v.is_empty()) {
                return Err(CacheError::BadRecord {
                    path: self.cache.inner.path.clone(),
                    op: "embed".into(),
                    identity: id,
                    key,
                    detail: "an empty vector".into(),
                }
                .into());
            }
            if hit.is_some() {
                self.cache.inner.hits.fetch_add(1, Ordering::Relaxed);
                self.cache.touch(&key);
            } else {
                todo.push(i);
            }
            found.push(hit);
        }
        if !todo.is_empty() {
            if self.cache.mode() == CacheMode::ReadOnly {
                return Err(CacheError::Miss {
                    op: "embed".into(),
                    identity: id,
                    request: abridge(texts[todo[0]]),
                    cache: self.cache.inner.path.clone(),
                }
                .into());
            }
            let batch: Vec<&str> = todo.iter().map(|&i| texts[i]).collect();
            let out = self.inner.embed(&batch)?;
            for (r, &i) in todo.iter().enumerate() {
                let v = out.row(r).to_vec();
                self.cache.inner.misses.fetch_add(1, Ordering::Relaxed);
                if self.cache.mode() == CacheMode::ReadWrite {
                    let req = serde_json::to_string(texts[i]).unwrap_or_default();
                    let key = CallCache::key(&id, "embed", &req);
                    let resp = serde_json::to_string(&v).unwrap_or_default();
                    self.cache.put_raw(&key, &id, "embed", &req, &resp)?;
                    self.cache.touch(&key);
                }
                found[i] = Some(v);
            }
        }
        let dim = found
            .first()
            .and_then(|v| v.as_ref())
            .map(Vec::len)
            .unwrap_or(0);
        let mut m = Array2::zeros((texts.len(), dim));
        for (i, v) in found.into_iter().enumerate() {
            let v = v.expect("every text embedded");
            if v.len() != dim {
                return Err(rgd_core::Error::Data(format!(
                    "embedder `{id}` returned {} values for text {i}, {dim} for the first",
                    v.len()
                )));
            }
            m.row_mut(i).assign(&ndarray::ArrayView1::from(&v[..]));
        }
        Ok(m)
    }
}
