//! The `openai` backend and embedder: any server that speaks the OpenAI HTTP API (vLLM,
//! SGLang, llama.cpp's server, llama-cpp-python, hosted APIs).
//!
//! - **Letter scoring** (`score_choices`): one chat (or completions) call with `max_tokens = 1`,
//!   `temperature = 0` and `top_logprobs`; each option letter's log-probability is the
//!   log-sum-exp of the listed tokens that spell it (`"A"`, `" A"`, `"(A"`). A letter the
//!   server did not list gets the lowest listed log-probability (an upper bound on its own).
//! - **Generation**: chat (or completions) with temperature, top-p, seed; the reply's
//!   confidence is its mean token log-probability.
//! - **Fallback without log-probabilities** (servers or hosted models that do not return
//!   them): the reply's letter gets probability `fallback_confidence` (default 0.9) and the
//!   other letters share the rest equally; a generated reply's mean log-probability is
//!   `ln(fallback_confidence)`. A one-line notice says so, once per backend.
//! - **Reply prefix** (`GenerateRequest::assistant_prefix`): sent as a final assistant message
//!   (`prefill = "message"`, what llama.cpp's server and most servers continue); with
//!   `prefill = "continue"` also `continue_final_message = true, add_generation_prompt =
//!   false` (vLLM, SGLang); `"off"` does not send it. The returned text always starts with the
//!   prefix (once, whether or not the server echoes it).
//! - **Fleet and limits**: several `base_urls` are used round-robin per request; at most
//!   `max_concurrency` requests in flight and `requests_per_second` started per backend;
//!   `timeout_s` per request; on 429 (honouring `Retry-After`), 408, 5xx, timeouts, connection
//!   errors and unreadable bodies it retries up to `max_retries` times with exponential
//!   backoff and full jitter. A call still failing is [`rgd_core::Error::Unavailable`]: the
//!   pool counts an abstention, nothing is cached, a rerun retries it. Other 4xx replies (a
//!   wrong key, an unknown model) stop the run with the server's message.
//! - **API key**: read from the environment variable named by `api_key_env` when the backend
//!   is built; it is never part of the identity (the cache key), never printed or stored.

mod api;
mod client;

pub use client::Client;
use governor::{Quota, RateLimiter};
use ndarray::Array2;
use rgd_core::{ChoiceScores, Embedder, GenerateRequest, Generation, LlmBackend, ScoreRequest};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    /// A setting is wrong (the key is named).
    #[error("`{key}`: {msg}")]
    Config {
        /// The TOML key.
        key: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// The server answered with a status that retrying cannot fix (400, 401, 404, ...).
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        /// The request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's error message (or body, abridged).
        message: String,
    },
    /// Every attempt failed with a retryable error.
    #[error("{url}: gave up after {attempts} attempts; last: {last}")]
    Exhausted {
        /// The last request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The reply has no usable content for this call (no choices, no option letter).
    #[error("{0}")]
    NoAnswer(String),
    /// The prompt is too long for the server's context.
    #[error("{url}: the prompt does not fit the model's context: {message}")]
    TooLong {
        /// The request URL.
        url: String,
        /// The server's message.
        message: String,
    },
    /// The client cannot run (e.g. called from inside an async runtime, or it cannot start).
    #[error("{0}")]
    Runtime(String),
}

impl From<OpenAiError> for rgd_core::Error {
    fn from(e: OpenAiError) -> Self {
        match e {
            OpenAiError::Exhausted { .. } => rgd_core::Error::Unavailable(e.to_string()),
            OpenAiError::NoAnswer(_) | OpenAiError::TooLong { .. } => {
                rgd_core::Error::Unanswerable(e.to_string())
            }
            e => rgd_core::Error::component("backend openai", e),
        }
    }
}

/// Which endpoint carries prompts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/chat/completions` with the conversation (the server applies the chat template).
    #[default]
    Chat,
    /// `/completions` with the conversation rendered as plain `role: content` lines.
    Completions,
}

/// How a reply prefix is sent (see the crate docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Prefill {
    /// A final assistant message holding the prefix.
    #[default]
    Message,
    /// A final assistant message plus vLLM's `continue_final_message` flags.
    Continue,
    /// Not sent (the reply still starts with it).
    Off,
}

/// An OpenAI-compatible endpoint: `[backends.NAME] type = "openai"` or, for embeddings,
/// `[embedder] type = "openai"` (the generation keys are then unused).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAi {
    /// The API root, e.g. `http://127.0.0.1:8000/v1` (give this or `base_urls`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Several servers of the same model, used round-robin (a small fleet).
    #[serde(default)]
    pub base_urls: Vec<String>,
    /// The model name the server expects.
    pub model: String,
    /// The environment variable holding the API key (sent as a bearer token). Never stored.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// `chat` (default) or `completions`.
    #[serde(default)]
    pub api: Api,
    /// Requests in flight at most (also how many calls the pool issues at once).
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Requests started per second at most (0: no limit).
    #[serde(default)]
    pub requests_per_second: f64,
    /// Seconds before a request is abandoned (and retried).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Retries after the first attempt (429, 408, 5xx, timeouts, connection errors, bad JSON).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First backoff in milliseconds (doubles per retry, full jitter).
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Longest wait between attempts in milliseconds (also caps `Retry-After`).
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
    /// Ask for log-probabilities (turn off for servers that reject the parameter).
    #[serde(default = "yes")]
    pub logprobs: bool,
    /// How many alternatives per token to ask for when scoring letters.
    #[serde(default = "default_top_logprobs")]
    pub top_logprobs: u32,
    /// Without log-probabilities: the probability given to the reply's letter.
    #[serde(default = "default_fallback")]
    pub fallback_confidence: f64,
    /// How a reply prefix is sent: `message` (default), `continue` (vLLM), `off`.
    #[serde(default)]
    pub prefill: Prefill,
    /// The cache identity (default `openai:MODEL@URLS`): set it to keep cached calls when the
    /// servers move, or to tell apart two servers that give one model name to different weights.
    #[serde(default)]
    pub identity: Option<String>,
    /// Embedder only: texts per request.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_concurrency() -> usize {
    16
}
fn default_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    5
}
fn default_backoff() -> u64 {
    250
}
fn default_max_backoff() -> u64 {
    10_000
}
fn yes() -> bool {
    true
}
fn default_top_logprobs() -> u32 {
    20
}
fn default_fallback() -> f64 {
    0.9
}
fn default_batch() -> usize {
    64
}

impl OpenAi {
    /// A config for `model` at `base_url`, every other key at its default.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAi {
            base_url: Some(base_url.into()),
            base_urls: Vec::new(),
            model: model.into(),
            api_key_env: None,
            api: Api::Chat,
            max_concurrency: default_concurrency(),
            requests_per_second: 0.0,
            timeout_s: default_timeout(),
            max_retries: default_retries(),
            backoff_ms: default_backoff(),
            max_backoff_ms: default_max_backoff(),
            logprobs: true,
            top_logprobs: default_top_logprobs(),
            fallback_confidence: default_fallback(),
            prefill: Prefill::Message,
            identity: None,
            batch: default_batch(),
        }
    }

    fn urls(&self) -> Result<Vec<String>, OpenAiError> {
        let mut urls: Vec<String> = self
            .base_url
            .iter()
            .chain(&self.base_urls)
            .cloned()
            .collect();
        if urls.is_empty() {
            return Err(OpenAiError::Config {
                key: "base_url",
                msg: "give the server's API root (`base_url = \"http://host:8000/v1\"`) or `base_urls = [...]`".into(),
            });
        }
        for u in &mut urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(OpenAiError::Config {
                    key: "base_url",
                    msg: format!("`{u}` is not an http:// or https:// URL"),
                });
            }
            while u.ends_with('/') {
                u.pop();
            }
        }
        Ok(urls)
    }

    /// Check the settings, read the API key, and make the HTTP client.
    pub fn connect(&self) -> Result<Client, OpenAiError> {
        let urls = self.urls()?;
        let bad = |key: &'static str, msg: &str| OpenAiError::Config {
            key,
            msg: msg.to_string(),
        };
        if self.model.trim().is_empty() {
            return Err(bad("model", "must name the server's model"));
        }
        if self.max_concurrency == 0 {
            return Err(bad("max_concurrency", "must be at least 1"));
        }
        // a day per request at most (a longer wait is a hang); one request a minute at the
        // slowest (a smaller rate is a typo that would stall the run for hours)
        if !(self.timeout_s > 0.0 && self.timeout_s <= 86_400.0) {
            return Err(bad(
                "timeout_s",
                &format!("must be seconds in (0, 86400], got {}", self.timeout_s),
            ));
        }
        if !(self.requests_per_second == 0.0
            || (self.requests_per_second >= 1.0 / 60.0 && self.requests_per_second.is_finite()))
        {
            return Err(bad(
                "requests_per_second",
                &format!(
                    "must be 0 (no limit) or a finite rate of at least 1/60 (one a minute), got {}",
                    self.requests_per_second
                ),
            ));
        }
        if self.max_concurrency > 4096 {
            return Err(bad("max_concurrency", "must be at most 4096"));
        }
        if self.max_backoff_ms > 3_600_000 {
            return Err(bad("max_backoff_ms", "must be at most 3600000 (an hour)"));
        }
        if !(self.fallback_confidence > 0.0 && self.fallback_confidence < 1.0) {
            return Err(bad(
                "fallback_confidence",
                "must be between 0 and 1 (exclusive)",
            ));
        }
        if self.batch == 0 {
            return Err(bad("batch", "must be at least 1"));
        }
        let key = match &self.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.trim().is_empty() => Some(k.trim().to_string()),
                _ => {
                    return Err(OpenAiError::Config {
                        key: "api_key_env",
                        msg: format!(
                            "the environment variable `{var}` is not set (it should hold the API key)"
                        ),
                    });
                }
            },
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(self.timeout_s))
            .pool_max_idle_per_host(self.max_concurrency.max(1))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| OpenAiError::Runtime(format!("cannot make the HTTP client: {e}")))?;
        let limiter = if self.requests_per_second > 0.0 {
            // governor counts whole cells: below one request per second, space them instead
            let quota = if self.requests_per_second >= 1.0 {
                Quota::per_second(
                    NonZeroU32::new(self.requests_per_second as u32).unwrap_or(NonZeroU32::MIN),
                )
            } else {
                Quota::with_period(Duration::from_secs_f64(1.0 / self.requests_per_second))
                    .ok_or_else(|| bad("requests_per_second", "too small"))?
            };
            Some(RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN)))
        } else {
            None
        };
        let identity = self
            .identity
            .clone()
            .unwrap_or_else(|| format!("openai:{}@{}", self.model, urls.join(",")));
        Ok(Client {
            cfg: self.clone(),
            identity,
            urls,
            key,
            http,
            next: AtomicUsize::new(0),
            permits: tokio::sync::Semaphore::new(self.max_concurrency),
            limiter,
            warned: AtomicBool::new(false),
        })
    }
}

/// The shared async runtime the blocking trait calls run on (two workers: the calls wait on
/// the network, not the CPU).
pub fn runtime() -> Result<&'static tokio::runtime::Runtime, OpenAiError> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rgd-openai")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| OpenAiError::Runtime(format!("cannot start the async runtime: {e}")))
}

/// Run `fut` to completion from blocking code. From a thread that is inside another async
/// runtime (e.g. `rgd serve`'s `spawn_blocking` workers, where tokio refuses to nest
/// runtimes) it runs on a short-lived thread of its own.
fn block_on<T: Send>(fut: impl Future<Output = T> + Send) -> Result<T, OpenAiError> {
    let rt = runtime()?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(rt.block_on(fut));
    }
    std::thread::scope(|s| s.spawn(|| rt.block_on(fut)).join())
        .map_err(|_| OpenAiError::Runtime("an OpenAI call panicked".into()))
}

/// The `openai` backend (blocking trait calls on the shared runtime).
#[derive(Debug)]
pub struct OpenAiBackend {
    client: Client,
}

impl OpenAiBackend {
    /// The HTTP client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl LlmBackend for OpenAiBackend {
    fn identity(&self) -> String {
        self.client.identity.clone()
    }
    fn score_choices(&self, req: &ScoreRequest) -> rgd_core::Result<ChoiceScores> {
        Ok(block_on(self.client.score(req))??)
    }
    fn generate(&self, req: &GenerateRequest) -> rgd_core::Result<Generation> {
        Ok(block_on(self.client.generate(req))??)
    }
    fn generate_stream(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> rgd_core::Result<Generation> {
        // the callback stays on this thread: pieces travel through a channel from the runtime
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let client = &self.client;
        let result = std::thread::scope(|s| {
            let h = s.spawn(move || {
                block_on(client.generate_stream(req, &mut |p: &str| {
                    let _ = tx.send(p.to_string());
                }))
            });
            for piece in rx {
                on_text(&piece);
            }
            h.join()
        });
        match result {
            Ok(r) => Ok(r??),
            Err(_) => Err(OpenAiError::Runtime("the streaming thread panicked".into()).into()),
        }
    }
    fn parallelism(&self) -> usize {
        self.client.cfg.max_concurrency
    }
}

/// The `openai` embedder (`/embeddings`).
#[derive(Debug)]
pub struct OpenAiEmbedder {
    client: Client,
}

impl Embedder for OpenAiEmbedder {
    fn identity(&self) -> String {
        self.client.identity.clone()
    }
    fn embed(&self, texts: &[&str]) -> rgd_core::Result<Array2<f32>> {
        let rows = block_on(self.client.embed(texts))??;
        let dim = rows.first().map_or(0, Vec::len);
        if rows.iter().any(|r| r.len() != dim) {
            return Err(OpenAiError::NoAnswer("embeddings of different lengths".into()).into());
        }
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        Array2::from_shape_vec((texts.len(), dim), flat)
            .map_err(|e| rgd_core::Error::Data(format!("embeddings: {e}")))
    }
}

fn build_backend(c: OpenAi) -> Result<Box<dyn LlmBackend>, OpenAiError> {
    Ok(Box::new(OpenAiBackend {
        client: c.connect()?,
    }))
}

fn build_embedder(c: OpenAi) -> Result<Box<dyn Embedder>, OpenAiError> {
    Ok(Box::new(OpenAiEmbedder {
        client: c.connect()?,
    }))
}

rgd_core::register!(backend, "openai", OpenAi, build_backend);
rgd_core::register!(embedder, "openai", OpenAi, build_embedder);

#[cfg(test)]
mod tests {
    use super::api::letter_of;
    use super::*;

    #[test]
    fn letters_are_read_from_token_spellings() {
        assert_eq!(letter_of(" A", 4), Some(0));
        assert_eq!(letter_of("(c", 4), Some(2));
        assert_eq!(letter_of("D.", 4), Some(3));
        assert_eq!(letter_of("E", 4), None);
        assert_eq!(letter_of("An", 4), None);
        assert_eq!(letter_of("", 4), None);
    }

    #[test]
    fn a_missing_key_variable_is_named() {
        let var = "RGD_TEST_OPENAI_KEY_NEVER_SHOWN";
        let mut c = OpenAi::new("http://127.0.0.1:9/v1", "m");
        c.api_key_env = Some(var.into());
        let missing = c.connect().unwrap_err().to_string();
        assert!(
            missing.contains(var) && missing.contains("api_key_env"),
            "{missing}"
        );
    }

    #[test]
    fn bad_settings_name_their_key() {
        let mut c = OpenAi::new("ftp://x", "m");
        assert!(c.connect().unwrap_err().to_string().contains("`base_url`"));
        c.base_url = Some("http://x/v1/".into());
        c.max_concurrency = 0;
        assert!(
            c.connect()
                .unwrap_err()
                .to_string()
                .contains("`max_concurrency`")
        );
        c.max_concurrency = 1;
        c.fallback_confidence = 1.0;
        assert!(
            c.connect()
                .unwrap_err()
                .to_string()
                .contains("`fallback_confidence`")
        );
        c.fallback_confidence = 0.5;
        // an infinite timeout (which used to panic converting to a Duration) and a rate that
        // would stall the run for hours are refused, naming the key
        for (timeout, rps, key) in [
            (f64::INFINITY, 0.0, "`timeout_s`"),
            (f64::NAN, 0.0, "`timeout_s`"),
            (30.0, 1e-9, "`requests_per_second`"),
            (30.0, f64::INFINITY, "`requests_per_second`"),
        ] {
            c.timeout_s = timeout;
            c.requests_per_second = rps;
            let e = c.connect().unwrap_err().to_string();
            assert!(e.contains(key), "{timeout} {rps}: {e}");
        }
        c.timeout_s = 30.0;
        c.requests_per_second = 0.5;
        assert!(c.connect().is_ok());
    }

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        let mut c = OpenAi::new("http://x/v1", "m");
        c.backoff_ms = 100;
        c.max_backoff_ms = 1000;
        let cl = c.connect().unwrap();
        for a in 0..10 {
            assert!(cl.backoff(a, None) <= Duration::from_millis(1000));
        }
        assert_eq!(
            cl.backoff(0, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            cl.backoff(0, Some(Duration::from_secs(60))),
            Duration::from_millis(1000)
        );
        assert!(cl.identity().starts_with("openai:m@http://x/v1"));
    }
}
