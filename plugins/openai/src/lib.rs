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

use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ndarray::Array2;
use rgd_core::{ChoiceScores, Embedder, GenerateRequest, Generation, LlmBackend, ScoreRequest};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// The HTTP client of one endpoint (or fleet): limits, retries, round-robin.
pub struct Client {
    cfg: OpenAi,
    identity: String,
    urls: Vec<String>,
    key: Option<String>,
    http: reqwest::Client,
    next: AtomicUsize,
    permits: tokio::sync::Semaphore,
    limiter: Option<DefaultDirectRateLimiter>,
    warned: AtomicBool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the key
        f.debug_struct("OpenAiClient")
            .field("identity", &self.identity)
            .field("urls", &self.urls)
            .field("api_key", &self.key.as_ref().map(|_| "<from env>"))
            .finish()
    }
}

/// A failed attempt: retry it or not.
enum Attempt {
    Retry {
        why: String,
        after: Option<Duration>,
    },
    Fatal(OpenAiError),
}

fn abridge(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The message of an OpenAI-style error body (`{"error": {"message": ...}}`), else the body.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error"))
                .or_else(|| v.get("detail"))
                .map(|m| {
                    m.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| m.to_string())
                })
        })
        .unwrap_or_else(|| abridge(body))
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn classify_status(
    url: &str,
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> Attempt {
    let message = error_message(body);
    let code = status.as_u16();
    if code == 429 || code == 408 || status.is_server_error() {
        return Attempt::Retry {
            why: format!("HTTP {code}: {message}"),
            after: retry_after(headers),
        };
    }
    let lower = message.to_lowercase();
    if code == 400
        && (lower.contains("context")
            || lower.contains("too long")
            || (lower.contains("maximum") && lower.contains("token")))
    {
        return Attempt::Fatal(OpenAiError::TooLong {
            url: url.to_string(),
            message,
        });
    }
    Attempt::Fatal(OpenAiError::Status {
        url: url.to_string(),
        status: code,
        message,
    })
}

impl Client {
    /// The cache identity (model and servers, never the key).
    pub fn identity(&self) -> &str {
        &self.identity
    }
    /// The configuration.
    pub fn config(&self) -> &OpenAi {
        &self.cfg
    }

    fn next_url(&self, path: &str) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len();
        format!("{}/{}", self.urls[i], path)
    }

    /// Wait before retry `attempt` (0-based): exponential backoff with full jitter, or the
    /// server's `Retry-After` when it asks for longer; both capped by `max_backoff_ms`.
    fn backoff(&self, attempt: u32, after: Option<Duration>) -> Duration {
        let cap = Duration::from_millis(self.cfg.max_backoff_ms);
        let exp =
            Duration::from_millis(self.cfg.backoff_ms.saturating_mul(1u64 << attempt.min(20)));
        let jittered = exp.min(cap).mul_f64(rand::random::<f64>());
        match after {
            Some(a) if a > jittered => a.min(cap),
            _ => jittered,
        }
    }

    /// After a failed attempt: the error if it is final or the retries are spent, else wait
    /// the backoff and count the attempt.
    async fn settle(
        &self,
        outcome: Attempt,
        attempt: &mut u32,
        url: String,
    ) -> Result<(), OpenAiError> {
        match outcome {
            Attempt::Fatal(e) => Err(e),
            Attempt::Retry { why, after } => {
                if *attempt >= self.cfg.max_retries {
                    return Err(OpenAiError::Exhausted {
                        url,
                        attempts: *attempt + 1,
                        last: why,
                    });
                }
                tokio::time::sleep(self.backoff(*attempt, after)).await;
                *attempt += 1;
                Ok(())
            }
        }
    }

    async fn start(&self) -> Result<tokio::sync::SemaphorePermit<'_>, OpenAiError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| OpenAiError::Runtime(e.to_string()))?;
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
        Ok(permit)
    }

    fn request(&self, url: &str, body: &Value) -> reqwest::RequestBuilder {
        let r = self.http.post(url).json(body);
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// POST `body` to `path` (relative to the API root) with limits and retries; the parsed
    /// reply and the seconds the successful attempt took.
    pub async fn post(&self, path: &str, body: &Value) -> Result<(Value, f64), OpenAiError> {
        let mut attempt = 0u32;
        loop {
            let url = self.next_url(path);
            let outcome = {
                let _permit = self.start().await?;
                let t0 = Instant::now();
                match self.request(&url, body).send().await {
                    Err(e) => Attempt::Retry {
                        why: transport(&e),
                        after: None,
                    },
                    Ok(resp) => {
                        let status = resp.status();
                        let headers = resp.headers().clone();
                        match resp.bytes().await {
                            Err(e) => Attempt::Retry {
                                why: format!("reading the reply: {}", transport(&e)),
                                after: None,
                            },
                            Ok(bytes) if status.is_success() => {
                                match serde_json::from_slice::<Value>(&bytes) {
                                    Ok(v) => return Ok((v, t0.elapsed().as_secs_f64())),
                                    Err(e) => Attempt::Retry {
                                        why: format!(
                                            "the reply is not valid JSON ({e}): {}",
                                            abridge(&String::from_utf8_lossy(&bytes))
                                        ),
                                        after: None,
                                    },
                                }
                            }
                            Ok(bytes) => classify_status(
                                &url,
                                status,
                                &headers,
                                &String::from_utf8_lossy(&bytes),
                            ),
                        }
                    }
                }
            };
            self.settle(outcome, &mut attempt, url).await?;
        }
    }

    /// POST a streaming request (`"stream": true`): `on_data` gets each server-sent event's
    /// parsed `data:` JSON. Retries like [`Client::post`] until the first event arrives; a
    /// stream broken after that is an error (its start was already handed on).
    pub async fn post_stream(
        &self,
        path: &str,
        body: &Value,
        on_data: &mut (dyn FnMut(&Value) + Send),
    ) -> Result<f64, OpenAiError> {
        let mut attempt = 0u32;
        loop {
            let url = self.next_url(path);
            let _permit = self.start().await?;
            let t0 = Instant::now();
            let outcome = match self.request(&url, body).send().await {
                Err(e) => Attempt::Retry {
                    why: transport(&e),
                    after: None,
                },
                Ok(resp) if !resp.status().is_success() => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let text = resp.text().await.unwrap_or_default();
                    classify_status(&url, status, &headers, &text)
                }
                Ok(resp) => {
                    let mut events = 0usize;
                    let mut buf = String::new();
                    let mut stream = resp.bytes_stream();
                    let mut failure = None;
                    'read: while let Some(chunk) = stream.next().await {
                        let chunk = match chunk {
                            Ok(c) => c,
                            Err(e) => {
                                failure = Some(format!("stream broke: {}", transport(&e)));
                                break;
                            }
                        };
                        buf.push_str(&String::from_utf8_lossy(&chunk));
                        // Server-sent events are written by hand here: only `data:` lines
                        // matter for this API and the framing is one line per field.
                        while let Some(nl) = buf.find('\n') {
                            let line: String = buf.drain(..=nl).collect();
                            let line = line.trim();
                            let Some(data) = line.strip_prefix("data:") else {
                                continue;
                            };
                            let data = data.trim();
                            if data == "[DONE]" {
                                break 'read;
                            }
                            match serde_json::from_str::<Value>(data) {
                                Ok(v) => {
                                    events += 1;
                                    on_data(&v);
                                }
                                Err(e) => {
                                    failure = Some(format!(
                                        "a stream event is not JSON ({e}): {}",
                                        abridge(data)
                                    ));
                                    break 'read;
                                }
                            }
                        }
                    }
                    match failure {
                        None => return Ok(t0.elapsed().as_secs_f64()),
                        Some(why) if events > 0 => {
                            return Err(OpenAiError::Exhausted {
                                url,
                                attempts: attempt + 1,
                                last: why,
                            });
                        }
                        Some(why) => Attempt::Retry { why, after: None },
                    }
                }
            };
            drop(_permit);
            self.settle(outcome, &mut attempt, url).await?;
        }
    }

    fn notice_no_logprobs(&self) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "note: openai backend `{}`: the server returned no log-probabilities; confidence falls back to fallback_confidence = {} for the reply's letter",
                self.identity, self.cfg.fallback_confidence
            );
        }
    }

    /// The body of a chat or completions request.
    fn body(&self, messages: &[rgd_core::Message], prefix: &str, params: Value) -> (String, Value) {
        let mut body = params;
        body["model"] = json!(self.cfg.model);
        match self.cfg.api {
            Api::Chat => {
                let mut msgs: Vec<Value> = messages
                    .iter()
                    .map(|m| json!({"role": m.role, "content": m.content}))
                    .collect();
                if !prefix.is_empty() && self.cfg.prefill != Prefill::Off {
                    msgs.push(json!({"role": "assistant", "content": prefix}));
                    if self.cfg.prefill == Prefill::Continue {
                        body["continue_final_message"] = json!(true);
                        body["add_generation_prompt"] = json!(false);
                    }
                }
                body["messages"] = Value::Array(msgs);
                ("chat/completions".into(), body)
            }
            Api::Completions => {
                let mut prompt: String = messages
                    .iter()
                    .map(|m| format!("{}: {}\n", m.role, m.content))
                    .collect();
                prompt.push_str("assistant: ");
                if self.cfg.prefill != Prefill::Off {
                    prompt.push_str(prefix);
                }
                body["prompt"] = json!(prompt);
                ("completions".into(), body)
            }
        }
    }

    /// Score the option letters (see the crate docs).
    pub async fn score(&self, req: &ScoreRequest) -> Result<ChoiceScores, OpenAiError> {
        let mut params = json!({"max_tokens": 1, "temperature": 0.0});
        if self.cfg.logprobs {
            match self.cfg.api {
                Api::Chat => {
                    params["logprobs"] = json!(true);
                    params["top_logprobs"] = json!(self.cfg.top_logprobs);
                }
                Api::Completions => params["logprobs"] = json!(self.cfg.top_logprobs),
            }
        }
        let (path, body) = self.body(&req.messages, &req.answer_prefix, params);
        let (v, seconds) = self.post(&path, &body).await?;
        let choice = first_choice(&v)?;
        let text = reply_text(choice);
        let top: Option<Vec<(String, f64)>> = match self.cfg.api {
            Api::Chat => choice
                .pointer("/logprobs/content/0/top_logprobs")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| {
                            Some((
                                t.get("token")?.as_str()?.to_string(),
                                t.get("logprob")?.as_f64()?,
                            ))
                        })
                        .collect()
                }),
            Api::Completions => choice
                .pointer("/logprobs/top_logprobs/0")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                        .collect()
                }),
        };
        let n = req.n_options;
        if let Some(top) = top.filter(|t| !t.is_empty()) {
            let mut per: Vec<Vec<f64>> = vec![Vec::new(); n];
            let lowest = top.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
            for (tok, lp) in &top {
                if let Some(i) = letter_of(tok, n) {
                    per[i].push(*lp);
                }
            }
            if per.iter().any(|p| !p.is_empty()) {
                let logprobs = per
                    .iter()
                    .map(|p| if p.is_empty() { lowest } else { logsumexp(p) })
                    .collect();
                return Ok(ChoiceScores { logprobs, seconds });
            }
        } else {
            self.notice_no_logprobs();
        }
        // fallback: the reply's letter
        let letter = rgd_pool::extract::extract_answer(&text, n)
            .map(|l| l.index())
            .or_else(|| letter_of(&text, n))
            .ok_or_else(|| {
                OpenAiError::NoAnswer(format!(
                    "no option letter in the reply {:?}",
                    abridge(&text)
                ))
            })?;
        let c = self.cfg.fallback_confidence;
        let rest = ((1.0 - c) / (n.max(2) - 1) as f64).ln();
        let logprobs = (0..n)
            .map(|i| if i == letter { c.ln() } else { rest })
            .collect();
        Ok(ChoiceScores { logprobs, seconds })
    }

    fn generate_params(&self, req: &GenerateRequest) -> Value {
        let mut params = json!({
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            // some servers take the seed as a signed 64-bit integer
            "seed": req.seed & (i64::MAX as u64),
        });
        if self.cfg.logprobs {
            match self.cfg.api {
                // llama-cpp-python returns none without `top_logprobs`
                Api::Chat => {
                    params["logprobs"] = json!(true);
                    params["top_logprobs"] = json!(1);
                }
                Api::Completions => params["logprobs"] = json!(1),
            }
        }
        params
    }

    /// Generate a reply (see the crate docs).
    pub async fn generate(&self, req: &GenerateRequest) -> Result<Generation, OpenAiError> {
        let (path, body) = self.body(
            &req.messages,
            &req.assistant_prefix,
            self.generate_params(req),
        );
        let (v, seconds) = self.post(&path, &body).await?;
        let choice = first_choice(&v)?;
        let text = reply_text(choice);
        let lps: Option<Vec<f64>> = match self.cfg.api {
            Api::Chat => choice
                .pointer("/logprobs/content")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.get("logprob")?.as_f64())
                        .collect()
                }),
            Api::Completions => choice
                .pointer("/logprobs/token_logprobs")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).collect()),
        };
        let n_tokens = v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .or(lps.as_ref().map(Vec::len))
            .unwrap_or(0);
        Ok(Generation {
            text: with_prefix(&req.assistant_prefix, &text),
            mean_logprob: self.mean_logprob(lps.as_deref(), true),
            n_tokens,
            seconds,
        })
    }

    fn mean_logprob(&self, lps: Option<&[f64]>, notice: bool) -> f64 {
        match lps {
            Some(l) if !l.is_empty() => l.iter().sum::<f64>() / l.len() as f64,
            _ => {
                if self.cfg.logprobs && notice {
                    self.notice_no_logprobs();
                }
                self.cfg.fallback_confidence.ln()
            }
        }
    }

    /// Generate with `"stream": true`, handing each piece of text to `on_text`.
    pub async fn generate_stream(
        &self,
        req: &GenerateRequest,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Generation, OpenAiError> {
        let (path, mut body) = self.body(
            &req.messages,
            &req.assistant_prefix,
            self.generate_params(req),
        );
        body["stream"] = json!(true);
        let mut text = String::new();
        let mut lps = Vec::new();
        let mut started = false;
        let prefix = req.assistant_prefix.clone();
        let api = self.cfg.api;
        let seconds = self
            .post_stream(&path, &body, &mut |v: &Value| {
                let Some(c) = v.pointer("/choices/0") else {
                    return;
                };
                let piece = match api {
                    Api::Chat => c.pointer("/delta/content").and_then(Value::as_str),
                    Api::Completions => c.get("text").and_then(Value::as_str),
                }
                .unwrap_or("");
                if let Some(a) = c.pointer("/logprobs/content").and_then(Value::as_array) {
                    lps.extend(a.iter().filter_map(|t| t.get("logprob")?.as_f64()));
                }
                if piece.is_empty() {
                    return;
                }
                if !started {
                    started = true;
                    if !prefix.is_empty() && !piece.starts_with(&prefix) {
                        on_text(&prefix);
                        text.push_str(&prefix);
                    }
                }
                on_text(piece);
                text.push_str(piece);
            })
            .await?;
        let n_tokens = lps.len();
        Ok(Generation {
            text: if started { text } else { prefix },
            // streamed chunks rarely carry log-probabilities: no notice
            mean_logprob: self.mean_logprob(Some(&lps), false),
            n_tokens,
            seconds,
        })
    }

    /// Embed `texts` (one request per `batch` texts), rows in order.
    pub async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, OpenAiError> {
        let mut out = Vec::with_capacity(texts.len());
        for part in texts.chunks(self.cfg.batch) {
            let body = json!({"model": self.cfg.model, "input": part});
            let (v, _) = self.post("embeddings", &body).await?;
            let data = v.get("data").and_then(Value::as_array).ok_or_else(|| {
                OpenAiError::NoAnswer(format!(
                    "embeddings reply without `data`: {}",
                    abridge(&v.to_string())
                ))
            })?;
            let mut rows: Vec<(u64, Vec<f32>)> = Vec::with_capacity(data.len());
            for (k, d) in data.iter().enumerate() {
                let idx = d.get("index").and_then(Value::as_u64).unwrap_or(k as u64);
                let emb = d
                    .get("embedding")
                    .and_then(Value::as_array)
                    .ok_or_else(|| {
                        OpenAiError::NoAnswer("an embeddings item without `embedding`".into())
                    })?;
                // llama-cpp-python returns one vector per token for models without pooling
                let row: Vec<f32> = if emb.first().is_some_and(Value::is_array) {
                    mean_rows(emb)
                } else {
                    emb.iter()
                        .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                        .collect()
                };
                rows.push((idx, row));
            }
            if rows.len() != part.len() {
                return Err(OpenAiError::NoAnswer(format!(
                    "asked for {} embeddings, got {}",
                    part.len(),
                    rows.len()
                )));
            }
            rows.sort_by_key(|r| r.0);
            out.extend(rows.into_iter().map(|r| r.1));
        }
        Ok(out)
    }
}

fn mean_rows(rows: &[Value]) -> Vec<f32> {
    let mut sum: Vec<f64> = Vec::new();
    let mut n = 0usize;
    for r in rows.iter().filter_map(Value::as_array) {
        if sum.is_empty() {
            sum = vec![0.0; r.len()];
        }
        for (s, x) in sum.iter_mut().zip(r) {
            *s += x.as_f64().unwrap_or(f64::NAN);
        }
        n += 1;
    }
    sum.into_iter()
        .map(|s| (s / n.max(1) as f64) as f32)
        .collect()
}

fn transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    let mut msg = format!("{kind}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

fn first_choice(v: &Value) -> Result<&Value, OpenAiError> {
    v.pointer("/choices/0").ok_or_else(|| {
        OpenAiError::NoAnswer(format!(
            "the reply has no choices: {}",
            abridge(&v.to_string())
        ))
    })
}

fn reply_text(choice: &Value) -> String {
    choice
        .pointer("/message/content")
        .or_else(|| choice.get("text"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn with_prefix(prefix: &str, text: &str) -> String {
    if prefix.is_empty() || text.starts_with(prefix) {
        text.to_string()
    } else {
        format!("{prefix}{text}")
    }
}

/// The option index a token spells (`"A"`, `" a"`, `"(B"`, `"C)"`, `"D."`), if any.
fn letter_of(tok: &str, n: usize) -> Option<usize> {
    let t = tok
        .trim()
        .trim_start_matches(['(', '*'])
        .trim_end_matches([')', '.', ':', '*']);
    let mut chars = t.chars();
    let c = chars.next()?;
    if chars.next().is_some() || !c.is_ascii_alphabetic() {
        return None;
    }
    let i = (c.to_ascii_uppercase() as u8 - b'A') as usize;
    (i < n).then_some(i)
}

fn logsumexp(xs: &[f64]) -> f64 {
    let mx = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    mx + xs.iter().map(|x| (x - mx).exp()).sum::<f64>().ln()
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
