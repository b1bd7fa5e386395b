//! Batched generation: several replies decoded together, one KV stream each, sharing the
//! prompt prefix.

use super::*;

/// One sequence of a batched generation.
pub(crate) struct Sequence {
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

pub(crate) fn sampler(req: &GenerateRequest) -> LlamaSampler {
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
    pub(crate) fn generate_together(
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
