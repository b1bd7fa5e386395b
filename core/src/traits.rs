//! The component traits: data sources, generators, filters, labelers, routers, embedders and
//! LLM backends. Each is implemented by plugin crates and found through the [`crate::Registry`].

use ndarray::{Array2, ArrayView1};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::data::{Dataset, Question, Split};
use crate::{Error, Result};

/// What every component call gets: where relative paths resolve, a seed, and verbosity.
#[derive(Clone, Debug)]
pub struct Context {
    /// Directory relative paths in the pipeline resolve against (the pipeline file's folder).
    pub base_dir: PathBuf,
    /// Run seed (components derive their own streams from it).
    pub seed: u64,
    /// Suppress progress and informational output.
    pub quiet: bool,
    /// The pipeline's named LLM backends (`[backends.NAME]`, wrapped in the call cache), for
    /// components that refer to one by name (a generator's `backend = "NAME"`).
    pub backends: BTreeMap<String, Arc<dyn LlmBackend>>,
    /// The pipeline's labelers by name (`[labelers.NAME]`, and the labeler types routers name
    /// without a table), for routers that learn from `labels = "NAME"` ([`Context::labels`]).
    pub labelers: BTreeMap<String, Arc<dyn crate::labels::Labeler>>,
    /// Set to stop the run at its next step (Ctrl-C in a notebook); long loops check it.
    pub interrupt: Arc<std::sync::atomic::AtomicBool>,
    /// Warnings components said while loading (rows skipped and counted, abstentions filled
    /// in); the data stage takes them, shows them and keeps them in the run's results.
    pub warnings: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Context {
    /// Whether the run was asked to stop.
    pub fn interrupted(&self) -> bool {
        self.interrupt.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// [`Error::Interrupted`] when the run was asked to stop.
    pub fn check_interrupt(&self) -> Result<()> {
        if self.interrupted() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }
    /// A context resolving paths against `base_dir`.
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        Context {
            base_dir: base_dir.into(),
            seed: 0,
            quiet: false,
            backends: BTreeMap::new(),
            labelers: BTreeMap::new(),
            interrupt: Default::default(),
            warnings: Default::default(),
        }
    }
    /// Record a warning for the run's results (the data stage shows it).
    pub fn warn(&self, msg: impl Into<String>) {
        if let Ok(mut w) = self.warnings.lock() {
            w.push(msg.into());
        }
    }
    /// The warnings recorded so far, emptied.
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
    /// The backend named `name` in `[backends.NAME]`.
    pub fn backend(&self, name: &str) -> Result<Arc<dyn LlmBackend>> {
        self.backends.get(name).cloned().ok_or_else(|| {
            crate::Error::Data(format!(
                "no backend named `{name}`: declare it as [backends.{name}] (declared: {})",
                if self.backends.is_empty() {
                    "none".to_string()
                } else {
                    self.backends.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ))
        })
    }
    /// Resolve `p` against the base directory (absolute paths stay as they are).
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
    /// Print an informational line on stderr unless quiet.
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }
}

/// Provides a whole [`Dataset`]: training split, test split and the pool's responses.
pub trait DataSource: Send + Sync + Debug {
    /// Load (or generate) the dataset.
    fn load(&self, ctx: &Context) -> Result<Dataset>;
}

/// Provides questions without responses (a benchmark, a file of generated questions, ...).
pub trait QuestionSource: Send + Sync + Debug {
    /// Load the questions.
    fn questions(&self, ctx: &Context) -> Result<Vec<Question>>;
}

/// A subject and the one-paragraph description a generator writes questions from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubjectDescription {
    /// Subject name (inherited by every generated question).
    pub subject: String,
    /// The task description.
    pub description: String,
}

/// Counts of one subject's generation: calls, replies, blocks parsed and dropped (by reason).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// Generator calls.
    pub calls: usize,
    /// Replies with no tagged block at all (empty, truncated, another language, garbage).
    pub replies_without_blocks: usize,
    /// Question blocks found.
    pub blocks: usize,
    /// Blocks that parsed into a question.
    pub parsed: usize,
    /// Reason -> blocks dropped for it.
    pub dropped: BTreeMap<String, usize>,
    /// Tokens generated.
    pub tokens: usize,
    /// Seconds the backend spent (as recorded, so replays report the original time).
    pub seconds: f64,
    /// Calls that failed (an unanswerable prompt, or a server down through its retries);
    /// counted as empty replies, not cached, retried by a rerun.
    #[serde(default)]
    pub failed_calls: usize,
}

impl GenerationStats {
    /// Add another subject's (or call's) counts.
    pub fn add(&mut self, o: &GenerationStats) {
        self.calls += o.calls;
        self.replies_without_blocks += o.replies_without_blocks;
        self.blocks += o.blocks;
        self.parsed += o.parsed;
        for (k, v) in &o.dropped {
            *self.dropped.entry(k.clone()).or_default() += v;
        }
        self.tokens += o.tokens;
        self.seconds += o.seconds;
        self.failed_calls += o.failed_calls;
    }
}

/// One generator call, kept so a researcher can see what the model was asked and said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationRecord {
    /// The subject.
    pub subject: String,
    /// Call number within the subject.
    pub call: usize,
    /// Sampling seed of the call.
    pub seed: u64,
    /// The prompt.
    pub messages: Vec<Message>,
    /// The raw reply.
    pub reply: String,
    /// Ids of the questions parsed from it.
    pub question_ids: Vec<String>,
    /// Blocks dropped from it, by reason.
    pub dropped: BTreeMap<String, usize>,
}

/// What a generator produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    /// The questions, each with its subject, key and `source` (generator and prompt).
    pub questions: Vec<Question>,
    /// Per subject counts.
    pub stats: BTreeMap<String, GenerationStats>,
    /// Every call.
    pub records: Vec<GenerationRecord>,
}

/// Writes multiple-choice questions with answer keys from subject descriptions.
pub trait Generator: Send + Sync + Debug {
    /// Generate questions for the given subjects.
    fn generate(&self, subjects: &[SubjectDescription], ctx: &Context) -> Result<Generated>;
    /// The name of the backend it writes with (`[backends.NAME]`), if any: that model
    /// re-answers the generated questions for the `self_answer` filter and the diagnostics.
    fn backend_name(&self) -> Option<&str> {
        None
    }
}

/// What a filter decided: which questions to keep and why the others were removed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterOutcome {
    /// One flag per question of the split.
    pub keep: Vec<bool>,
    /// Reason -> number of questions removed for it.
    pub removed: BTreeMap<String, usize>,
}

/// Removes training questions (format, self-answer, differentiation, duplicates, balance).
pub trait Filter: Send + Sync + Debug {
    /// Decide which questions of `split` to keep.
    fn filter(&self, split: &Split, models: &[String], ctx: &Context) -> Result<FilterOutcome>;
}

/// A query as a trained router sees it at inference time.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// Question id (for deterministic per-query randomness; never for lookups of answers).
    pub id: &'a str,
    /// The question text.
    pub text: &'a str,
    /// Its embedding.
    pub embedding: ArrayView1<'a, f32>,
}

/// A router's hyper-parameters; training produces a [`TrainedRouter`].
pub trait Router: Send + Sync + Debug {
    /// Train on the training split. `models` names the pool's columns.
    fn train(
        &self,
        train: &Split,
        models: &[String],
        ctx: &Context,
    ) -> Result<Box<dyn TrainedRouter>>;
    /// What the router learns from (the report shows it next to its accuracy). For a router
    /// that takes labels the pipeline asks its labeler instead ([`Context::supervision_of`]);
    /// this default guesses from the labeler's name (`key` reads the key).
    fn supervision(&self) -> Supervision {
        match self.labels() {
            Some("key" | "correctness") => Supervision::QueryAnswer,
            _ => Supervision::QueryOnly,
        }
    }
    /// The labeler it learns from (`labels = "NAME"`: a `[labelers.NAME]` table or a labeler
    /// type), when it takes one. The pipeline resolves it before training, and the router's
    /// supervision is the labeler's ([`Context::supervision_of`]).
    fn labels(&self) -> Option<&str> {
        None
    }
    /// Check the hyper-parameters (finite, in range, within size ceilings). The registry calls
    /// it when the router is built from its table, so a bad value is an error naming the
    /// table before any data loads.
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// What a router learns from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Supervision {
    /// The queries and the answer key (labels = correctness against the key).
    QueryAnswer,
    /// The queries and the pool's own answers, no key.
    QueryOnly,
    /// Nothing (a reference such as random routing).
    None,
}

impl Supervision {
    /// Short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Supervision::QueryAnswer => "answer key",
            Supervision::QueryOnly => "pool answers",
            Supervision::None => "nothing",
        }
    }
}

/// A trained router: an artifact that can be saved (typetag, tagged by `router`) and scores
/// the pool's models for a query. Higher score = better; ranking ties go to the lower index.
#[typetag::serde(tag = "router")]
pub trait TrainedRouter: Send + Sync + Debug {
    /// The pool, in score order.
    fn models(&self) -> &[String];
    /// Write one score per model into `out` (length = number of models).
    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> Result<()>;
    /// Scores for every question of a split, `[question, model]`.
    fn score_split(&self, split: &Split) -> Result<Array2<f64>> {
        score_each(self, split)
    }
    /// A one-line human explanation of the decision (cluster, subject, neighbours used).
    fn explain(&self, _query: &Query<'_>) -> Option<String> {
        None
    }
    /// Check a loaded artifact before it routes anything: shapes agree with `models` and
    /// with each other, values are finite, parameters in range. An artifact is read from
    /// outside (edited, foreign or cut short), so every router with state overrides this; the
    /// error names the field (`rgd route` and `rgd serve` add the file).
    fn validate(&self) -> Result<()> {
        artifact::models(self.models())
    }
}

/// Checks shared by [`TrainedRouter::validate`] implementations; each error names the field.
pub mod artifact {
    use crate::{Error, Result};

    fn bad(field: &str, msg: impl std::fmt::Display) -> Error {
        Error::Data(format!("artifact field `{field}`: {msg}"))
    }

    /// `models` is non-empty and has no duplicate.
    pub fn models(models: &[String]) -> Result<()> {
        if models.is_empty() {
            return Err(bad("models", "empty"));
        }
        let mut seen = std::collections::HashSet::new();
        for m in models {
            if !seen.insert(m) {
                return Err(bad("models", format!("`{m}` appears twice")));
            }
        }
        Ok(())
    }

    /// `field` has `want` values.
    pub fn len(field: &str, got: usize, want: usize, of: &str) -> Result<()> {
        if got == want {
            Ok(())
        } else {
            Err(bad(field, format!("{got} values, expected {want} ({of})")))
        }
    }

    /// Every value of `field` is finite.
    pub fn finite<'a, T: Into<f64> + Copy + 'a>(
        field: &str,
        values: impl IntoIterator<Item = &'a T>,
    ) -> Result<()> {
        match values.into_iter().position(|v| !(*v).into().is_finite()) {
            None => Ok(()),
            Some(i) => Err(bad(field, format!("value {i} is not a finite number"))),
        }
    }

    /// `value` lies in `lo..=hi` (which rejects NaN).
    pub fn range(field: &str, value: f64, lo: f64, hi: f64) -> Result<()> {
        if value >= lo && value <= hi {
            Ok(())
        } else {
            Err(bad(field, format!("{value} is outside {lo}..={hi}")))
        }
    }

    /// `value` is a positive finite number.
    pub fn positive(field: &str, value: f64) -> Result<()> {
        if value > 0.0 && value.is_finite() {
            Ok(())
        } else {
            Err(bad(
                field,
                format!("{value} must be a positive finite number"),
            ))
        }
    }
}

/// Check that a query's embedding holds finite numbers only (a value beyond f32, such as
/// 1e39, reads as infinity and would make every distance NaN); the error names the query.
pub fn check_finite(query: &Query<'_>) -> Result<()> {
    match query
        .embedding
        .iter()
        .enumerate()
        .find(|(_, x)| !x.is_finite())
    {
        Some((i, x)) => Err(crate::Error::Data(format!(
            "query `{}`: embedding value {i} is {x}, not a finite number",
            query.id
        ))),
        None => Ok(()),
    }
}

/// Check that a query's embedding is finite and has the dimension a router was trained on (an
/// error naming the query otherwise).
pub fn check_dim(query: &Query<'_>, want: usize) -> Result<()> {
    check_finite(query)?;
    if query.embedding.len() == want {
        Ok(())
    } else {
        Err(crate::Error::Data(format!(
            "query `{}`: embedding of dimension {}, the router was trained on {want}",
            query.id,
            query.embedding.len()
        )))
    }
}

/// Score a split one query at a time with [`TrainedRouter::score`] (the default
/// `score_split`; batched implementations may fall back to it).
pub fn score_each<R: TrainedRouter + ?Sized>(router: &R, split: &Split) -> Result<Array2<f64>> {
    let m = router.models().len();
    let mut out = Array2::zeros((split.len(), m));
    let mut buf = vec![0.0; m];
    for (i, q) in split.questions.iter().enumerate() {
        let query = Query {
            id: &q.id,
            text: &q.text,
            embedding: split.embedding(i),
        };
        router.score(&query, &mut buf)?;
        out.row_mut(i).assign(&ArrayView1::from(&buf[..]));
    }
    Ok(out)
}

/// Embeds texts into vectors.
pub trait Embedder: Send + Sync + Debug {
    /// A stable identity (model file hash), used as a cache key.
    fn identity(&self) -> String;
    /// Embed a batch of texts, one row each.
    fn embed(&self, texts: &[&str]) -> Result<Array2<f32>>;
}

/// A chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// Ask a model to pick one of `n_options` letters for a prompt (one forward pass).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRequest {
    /// The conversation; the model's answer letter comes next.
    pub messages: Vec<Message>,
    /// How many letters (A..) to score.
    pub n_options: usize,
    /// Text appended after the rendered conversation (e.g. `Answer:`); the letter follows it.
    #[serde(default)]
    pub answer_prefix: String,
}

/// Log-probabilities of the option letters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChoiceScores {
    /// One log-probability per letter, A first.
    pub logprobs: Vec<f64>,
    /// Seconds the model took (kept in the cache, so replays report the original latency).
    #[serde(default)]
    pub seconds: f64,
}

/// Score each option's text as the continuation of a prompt ("cloze", as evaluation harnesses
/// score small models): its log-likelihood given the conversation and `answer_prefix`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClozeRequest {
    /// The conversation; an option's text comes next.
    pub messages: Vec<Message>,
    /// Text appended after the rendered conversation (e.g. `Answer:`).
    #[serde(default)]
    pub answer_prefix: String,
    /// The option texts (each scored after a space).
    pub options: Vec<String>,
}

/// Log-likelihoods of option texts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptionScores {
    /// Per option: the sum of its tokens' log-probabilities.
    pub logprobs: Vec<f64>,
    /// Per option: how many tokens it has (for per-token normalization).
    pub tokens: Vec<usize>,
    /// Seconds the model took.
    #[serde(default)]
    pub seconds: f64,
}

/// Sampled generation parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Nucleus sampling mass.
    pub top_p: f64,
    /// Maximum new tokens.
    pub max_tokens: usize,
    /// Sampling seed.
    pub seed: u64,
    /// Text the reply is made to start with (appended after the rendered conversation; the
    /// returned text includes it). Empty: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub assistant_prefix: String,
}

/// A generated reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The text.
    pub text: String,
    /// Mean token log-probability of the text (its confidence).
    pub mean_logprob: f64,
    /// Number of generated tokens.
    pub n_tokens: usize,
    /// Seconds the model took.
    #[serde(default)]
    pub seconds: f64,
}

/// An LLM: scores option letters and generates text.
pub trait LlmBackend: Send + Sync + Debug {
    /// A stable identity (model file hash or endpoint + model name), used as a cache key.
    fn identity(&self) -> String;
    /// Score the option letters after the prompt.
    fn score_choices(&self, req: &ScoreRequest) -> Result<ChoiceScores>;
    /// Generate a reply.
    fn generate(&self, req: &GenerateRequest) -> Result<Generation>;
    /// Score each option's text after the prompt (`mode = "cloze"`). The default refuses:
    /// it needs the model's log-probabilities of arbitrary text.
    fn score_options(&self, _req: &ClozeRequest) -> Result<OptionScores> {
        Err(crate::Error::Data(format!(
            "{} cannot score option texts (`mode = \"cloze\"` needs a backend that gives the log-probability of any continuation, such as `llamacpp`)",
            self.identity()
        )))
    }
    /// Generate a reply, handing its text to `on_text` piece by piece as it is produced
    /// (`rgd serve` streams it). The default generates the whole reply, then hands it over
    /// in one piece.
    fn generate_stream(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let g = self.generate(req)?;
        on_text(&g.text);
        Ok(g)
    }
    /// How many calls this backend usefully takes at once (a remote server's concurrency
    /// limit); callers with many independent calls run up to this many side by side. Local
    /// in-process models answer one at a time: 1.
    fn parallelism(&self) -> usize {
        1
    }
    /// How many generation requests this backend decodes together in one pass per token
    /// ([`LlmBackend::generate_batch`]); 1: one at a time.
    fn batch_size(&self) -> usize {
        1
    }
    /// Replies to several requests, in order, each with its own result. Backends that decode
    /// several sequences together (`llamacpp` with `sequences` > 1) answer them in one pass per
    /// token; the default answers them one by one.
    fn generate_batch(&self, reqs: &[GenerateRequest]) -> Vec<Result<Generation>> {
        reqs.iter().map(|r| self.generate(r)).collect()
    }
}

/// Every request's reply, in order: in batches of [`LlmBackend::batch_size`] when the backend
/// decodes several together, else up to [`LlmBackend::parallelism`] calls at once. The pool's
/// generating members and the question generator both call models through this.
pub fn generate_all(backend: &dyn LlmBackend, reqs: &[GenerateRequest]) -> Vec<Result<Generation>> {
    let batch = backend.batch_size();
    if batch > 1 {
        reqs.chunks(batch)
            .flat_map(|part| backend.generate_batch(part))
            .collect()
    } else {
        parallel_map(reqs, backend.parallelism(), |_, r| backend.generate(r))
    }
}

/// Run `f` on every item with up to `workers` threads, results in the items' order. Remote
/// backends spend their time waiting on the network, so the pool and the generator issue
/// [`LlmBackend::parallelism`] calls at once through this; rayon's pool is sized for CPU-bound
/// work (one thread per core) and would cap them at 2 here.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(usize, &T) -> R + Sync,
) -> Vec<R> {
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(t) = items.get(i) else { break };
                    let r = f(i, t);
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every index is visited once")
        })
        .collect()
}

/// A shared backend is a backend (so one `[backends.NAME]` can serve a generator, a filter
/// and a pool member).
impl LlmBackend for Arc<dyn LlmBackend> {
    fn identity(&self) -> String {
        self.as_ref().identity()
    }
    fn score_choices(&self, req: &ScoreRequest) -> Result<ChoiceScores> {
        self.as_ref().score_choices(req)
    }
    fn generate(&self, req: &GenerateRequest) -> Result<Generation> {
        self.as_ref().generate(req)
    }
    fn score_options(&self, req: &ClozeRequest) -> Result<OptionScores> {
        self.as_ref().score_options(req)
    }
    fn generate_stream(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        self.as_ref().generate_stream(req, on_text)
    }
    fn parallelism(&self) -> usize {
        self.as_ref().parallelism()
    }
    fn batch_size(&self) -> usize {
        self.as_ref().batch_size()
    }
    fn generate_batch(&self, reqs: &[GenerateRequest]) -> Vec<Result<Generation>> {
        self.as_ref().generate_batch(reqs)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parallel_map_keeps_the_order_and_visits_each_item_once() {
        let items: Vec<u64> = (0..1000).collect();
        for workers in [1, 3, 64] {
            let out = super::parallel_map(&items, workers, |i, x| {
                assert_eq!(i as u64, *x);
                x * 2
            });
            assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        }
        assert!(super::parallel_map(&[] as &[u8], 8, |_, x| *x).is_empty());
    }
}
