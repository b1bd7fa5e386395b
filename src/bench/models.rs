//! `rgd bench pool` and `rgd bench generate`: the local models (llama.cpp) on real MMLU questions.

#[cfg(feature = "llamacpp")]
use anyhow::Result;
#[cfg(feature = "llamacpp")]
use rgd_components::{rgd_backend_llamacpp, rgd_benchmarks, rgd_generator_llm};
#[cfg(feature = "llamacpp")]
use std::time::Instant;

/// `rgd bench pool`: the local pool on real MMLU questions.
#[derive(clap::Args, Debug, Clone)]
pub struct PoolBenchArgs {
    /// MMLU questions (sampled across all subjects, seeded).
    #[arg(long, default_value_t = 200, value_parser = super::count(1, 100000))]
    pub questions: usize,
    /// Models (asset names).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b"
    )]
    pub models: Vec<String>,
    /// Call cache (reruns are free; delete it to re-measure speed).
    #[arg(long, default_value = "/tmp/rgd-bench-pool.sqlite")]
    pub cache: std::path::PathBuf,
}

/// Accuracy with and without letter-prior correction, and seconds per question per model.
#[cfg(feature = "llamacpp")]
pub fn bench_pool(a: &PoolBenchArgs) -> Result<()> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let (mut all, _) = rgd_benchmarks::load_all("mmlu")?;
    all.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    all.truncate(a.questions);
    let cache = rgd_cache::CallCache::open(&a.cache, rgd_cache::CacheMode::ReadWrite)?;
    println!(
        "{} MMLU questions (seed 7), cache {}",
        all.len(),
        a.cache.display()
    );
    println!(
        "| model | accuracy raw | accuracy prior-corrected | s/question | letter most chosen (raw) |"
    );
    println!("|---|---:|---:|---:|---|");
    let mut per_question_total = 0.0;
    for m in &a.models {
        let backend = rgd_backend_llamacpp::LlamaCpp {
            model: m.clone(),
            n_ctx: 2048,
            threads: 0,
            chat_template: true,
            sequences: 1,
        }
        .open()?;
        let mut row = Vec::new();
        let mut secs = 0.0;
        let mut top_letter = String::new();
        for pc in [false, true] {
            let member = rgd_pool::PoolMember {
                name: m.clone(),
                backend: Box::new(rgd_cache::CachedBackend {
                    inner: Box::new(backend.open_again()),
                    cache: cache.clone(),
                }),
                prior_correction: pc,
                mode: Default::default(),
            };
            let (r, _) = rgd_pool::answer(&all, std::slice::from_ref(&member), &mut |_, _, _| {})?;
            let right = (0..all.len())
                .filter(|&i| r.is_correct(i, 0, all[i].answer))
                .count();
            row.push(right as f64 / all.len() as f64);
            if !pc {
                secs = r
                    .latency
                    .as_ref()
                    .map(|l| l.column(0).mean().unwrap_or(0.0))
                    .unwrap_or(0.0);
                let mut counts = std::collections::BTreeMap::new();
                for c in r.choice.column(0).iter().flatten() {
                    *counts.entry(c.to_string()).or_insert(0usize) += 1;
                }
                if let Some((l, n)) = counts.iter().max_by_key(|(_, n)| **n) {
                    top_letter = format!("{l} ({n}/{})", all.len());
                }
            }
        }
        per_question_total += secs;
        println!(
            "| {m} | {:.3} | {:.3} | {:.2} | {top_letter} |",
            row[0], row[1], secs
        );
    }
    println!(
        "one question with all {} models: {:.2} s",
        a.models.len(),
        per_question_total
    );
    Ok(())
}

/// Most sequences decoded together: llama.cpp's `LLAMA_MAX_SEQ` (the `llamacpp` backend refuses
/// more, naming `sequences`).
const MAX_SEQUENCES: u64 = 256;

/// `rgd bench generate`: the `llm` generator on a local model, timed without the cache.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerateBenchArgs {
    /// Generator model (asset name or GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-1.5b")]
    pub model: String,
    /// Descriptions file; the first `--subjects` subjects are used.
    #[arg(long, default_value = "descriptions/mmlu.toml")]
    pub descriptions: std::path::PathBuf,
    /// Subjects.
    #[arg(long, default_value_t = 4, value_parser = super::count(1, 1000))]
    pub subjects: usize,
    /// Calls per subject.
    #[arg(long, default_value_t = 1, value_parser = super::count(1, 1000))]
    pub calls: usize,
    /// Questions asked for per call.
    #[arg(long, default_value_t = 5, value_parser = super::count(1, 100))]
    pub questions_per_call: usize,
    /// Instead of the generator: a thinking pool member's replies (step by step, then the
    /// letter) to `--questions` MMLU questions, decoded this many together (e.g. 1,4,8,16;
    /// 1 to 256, llama.cpp's most sequences).
    #[arg(long, value_delimiter = ',', value_parser = super::count(1, MAX_SEQUENCES))]
    pub sequences: Vec<usize>,
    /// MMLU questions answered with `--sequences` (sampled across all subjects, seeded).
    #[arg(long, default_value_t = 16, value_parser = super::count(1, 100000))]
    pub questions: usize,
    /// Token budget of each reply with `--sequences`.
    #[arg(long, default_value_t = 128, value_parser = super::count(1, 100000))]
    pub max_tokens: usize,
}

/// `rgd bench generate --sequences`: the same greedy replies decoded 1, 4, … at a time; tokens/s,
/// the speed-up over the first setting and how many replies equal the first setting's.
#[cfg(feature = "llamacpp")]
fn bench_sequences(a: &GenerateBenchArgs) -> Result<()> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let (mut qs, _) = rgd_benchmarks::load_all("mmlu")?;
    qs.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    qs.truncate(a.questions);
    let reqs: Vec<rgd_core::GenerateRequest> = qs
        .iter()
        .map(|q| rgd_pool::cot_request(q, a.max_tokens))
        .collect();
    println!(
        "{}: {} MMLU questions (seed 7) answered step by step, greedy, at most {} tokens each",
        a.model,
        reqs.len(),
        a.max_tokens
    );
    println!(
        "| sequences | tokens | seconds | tokens/s | speed-up | replies equal to the first row's |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut first: Option<(f64, Vec<String>)> = None;
    for &n in &a.sequences {
        let backend = rgd_backend_llamacpp::LlamaCpp {
            model: a.model.clone(),
            n_ctx: 4096,
            threads: 0,
            chat_template: true,
            sequences: n,
        }
        .open()?;
        // load the model outside the timing
        rgd_core::LlmBackend::generate(
            &backend,
            &rgd_core::GenerateRequest {
                max_tokens: 1,
                ..reqs[0].clone()
            },
        )?;
        let t0 = Instant::now();
        let gens = rgd_core::generate_all(&backend, &reqs)
            .into_iter()
            .collect::<rgd_core::Result<Vec<_>>>()?;
        let wall = t0.elapsed().as_secs_f64();
        let tokens: usize = gens.iter().map(|g| g.n_tokens).sum();
        let rate = tokens as f64 / wall;
        let texts: Vec<String> = gens.into_iter().map(|g| g.text).collect();
        let (speedup, equal) = match &first {
            Some((r0, t0)) => (
                rate / r0,
                texts.iter().zip(t0).filter(|(a, b)| a == b).count(),
            ),
            None => (1.0, texts.len()),
        };
        println!(
            "| {n} | {tokens} | {wall:.1} | {rate:.1} | {speedup:.2}x | {equal} of {} |",
            texts.len()
        );
        if first.is_none() {
            first = Some((rate, texts));
        }
    }
    Ok(())
}

/// Generate, then print tokens/s, questions/minute and the parse success rate.
#[cfg(feature = "llamacpp")]
pub fn bench_generate(a: &GenerateBenchArgs) -> Result<()> {
    if !a.sequences.is_empty() {
        return bench_sequences(a);
    }
    let backend = rgd_backend_llamacpp::LlamaCpp {
        model: a.model.clone(),
        n_ctx: 4096,
        threads: 0,
        chat_template: true,
        sequences: 16,
    }
    .open()?;
    let descs = rgd_generator_llm::descriptions::load(&a.descriptions)?;
    let subjects: Vec<rgd_core::SubjectDescription> = descs
        .iter()
        .take(a.subjects)
        .map(|(s, d)| rgd_core::SubjectDescription {
            subject: s.clone(),
            description: d.clone(),
        })
        .collect();
    let g = rgd_generator_llm::LlmGenerator {
        backend: a.model.clone(),
        questions_per_call: a.questions_per_call,
        calls_per_subject: a.calls,
        seed: 1,
        ..Default::default()
    };
    let mut ctx = rgd_core::Context::new(".");
    ctx.quiet = true;
    let t0 = Instant::now();
    let out = g.generate_with(&backend, &subjects, &ctx)?;
    let wall = t0.elapsed().as_secs_f64();
    let mut total = rgd_core::GenerationStats::default();
    for s in out.stats.values() {
        total.add(s);
    }
    println!(
        "generator {} on {} subjects x {} call(s), {} questions asked per call (cache off)",
        a.model,
        subjects.len(),
        a.calls,
        a.questions_per_call
    );
    println!("  tokens generated      {:>8}", total.tokens);
    println!("  seconds (wall)        {wall:>8.1}");
    println!(
        "  tokens/s              {:>8.1}",
        total.tokens as f64 / total.seconds.max(1e-9)
    );
    println!(
        "  questions parsed      {:>8} of {} asked ({} blocks found)",
        total.parsed,
        total.calls * a.questions_per_call,
        total.blocks
    );
    println!(
        "  questions/minute      {:>8.1}",
        total.parsed as f64 / wall * 60.0
    );
    println!(
        "  parse success         {:>7.1}% of blocks ({} replies without a block; dropped: {:?})",
        100.0 * total.parsed as f64 / total.blocks.max(1) as f64,
        total.replies_without_blocks,
        total.dropped
    );
    Ok(())
}
