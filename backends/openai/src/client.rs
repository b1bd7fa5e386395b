//! The HTTP client of one endpoint or fleet: round-robin over servers, concurrency and rate
//! limits, retries with backoff (honouring `Retry-After`), and error classification.

use super::{OpenAi, OpenAiError};
use futures_util::StreamExt;
use governor::DefaultDirectRateLimiter;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The HTTP client of one endpoint (or fleet): limits, retries, round-robin.
pub struct Client {
    pub(crate) cfg: OpenAi,
    pub(crate) identity: String,
    pub(crate) urls: Vec<String>,
    pub(crate) key: Option<String>,
    pub(crate) http: reqwest::Client,
    pub(crate) next: AtomicUsize,
    pub(crate) permits: tokio::sync::Semaphore,
    pub(crate) limiter: Option<DefaultDirectRateLimiter>,
    pub(crate) warned: AtomicBool,
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

pub(crate) fn abridge(s: &str) -> String {
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
    pub(crate) fn backoff(&self, attempt: u32, after: Option<Duration>) -> Duration {
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

    /// `text` with the API key this client holds replaced by `<redacted>`: a server may echo
    /// the `Authorization` header in an error body, and rgd never prints the key.
    fn redact(&self, text: &str) -> String {
        match &self.key {
            Some(k) if !k.is_empty() => text.replace(k.as_str(), "<redacted>"),
            _ => text.to_string(),
        }
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
                                            abridge(&self.redact(&String::from_utf8_lossy(&bytes)))
                                        ),
                                        after: None,
                                    },
                                }
                            }
                            Ok(bytes) => classify_status(
                                &url,
                                status,
                                &headers,
                                &self.redact(&String::from_utf8_lossy(&bytes)),
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
                    let text = self.redact(&resp.text().await.unwrap_or_default());
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
                                        abridge(&self.redact(data))
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

    pub(crate) fn notice_no_logprobs(&self) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "note: openai backend `{}`: the server returned no log-probabilities; confidence falls back to fallback_confidence = {} for the reply's letter",
                self.identity, self.cfg.fallback_confidence
            );
        }
    }
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
