//! `rgd serve`: a trained router behind an OpenAI-compatible HTTP API.
//!
//! - `POST /v1/chat/completions` — `model` is `rgd:NAME` (route to the router's top-1 model;
//!   if its backend fails, the next ranked model answers and the reply says so),
//!   `rgd:NAME:top3` (the top three models answer; their option letters are voted and the
//!   best-ranked reply with the winning letter is returned), or a pool model's own name
//!   (no routing). `stream: true` streams top-1 and direct replies as server-sent events.
//! - `GET /v1/models`, `GET /health`.
//! - The routing decision (ranking with scores, chosen models, who answered, fallbacks,
//!   votes, routing milliseconds) is in the reply's extra `rgd` field and, abridged, in the
//!   `x-rgd-route` header (`x-rgd-routing-ms` too).
//! - The query is the last user message; it is embedded by the artifact's embedder (batched:
//!   queries that arrive while one batch embeds go into the next) and scored by the router.
//! - Errors are OpenAI-style JSON: 400 (bad JSON, no messages, a bad parameter), 401 (wrong
//!   or missing bearer token when one is set), 404 (unknown model or path), 413 (body over
//!   the limit), 408 (a body not sent in time), 502 (every candidate model failed), 503 (over
//!   the connection cap).
//! - Connections are served under [`Limits`] (header, body and idle timeouts, a connection
//!   cap): see [`conn`].

pub mod conn;
mod request;
mod stream;

pub use conn::{Limits, serve_with_limits};
use request::*;
use stream::*;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rgd_core::{Embedder, GenerateRequest, LlmBackend, Message, TrainedRouter};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The router ranks models the pool does not have.
    #[error(
        "the router ranks {missing:?} but the backends pipeline's [pool] has only {have:?}; serve it with the pipeline it was trained with"
    )]
    MissingModels {
        /// Models the router knows and the pool lacks.
        missing: Vec<String>,
        /// The pool's models.
        have: Vec<String>,
    },
    /// The embedding worker cannot start.
    #[error("cannot start the embedding worker: {0}")]
    Worker(String),
}

/// What `rgd serve` serves.
pub struct Served {
    /// The router's name (`rgd:NAME`).
    pub name: String,
    /// The trained router; its `models()` name pool members.
    pub router: Box<dyn TrainedRouter>,
    /// The artifact's embedder.
    pub embedder: Box<dyn Embedder>,
    /// The pool: model name and backend.
    pub members: Vec<(String, Arc<dyn LlmBackend>)>,
    /// Bearer token required on `/v1/*` (none: open).
    pub token: Option<String>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Connection limits (the body timeout is applied by the handler).
    pub limits: Limits,
}

/// One query waiting for its embedding.
type EmbedJob = (
    String,
    tokio::sync::oneshot::Sender<Result<Vec<f32>, String>>,
);

pub(crate) struct St {
    pub(crate) name: String,
    pub(crate) router: Box<dyn TrainedRouter>,
    pub(crate) members: Vec<(String, Arc<dyn LlmBackend>)>,
    /// For each router model, its index in `members`.
    pub(crate) member_of: Vec<usize>,
    pub(crate) token: Option<String>,
    pub(crate) max_body: usize,
    pub(crate) body_timeout: std::time::Duration,
    pub(crate) embed_tx: std::sync::mpsc::Sender<EmbedJob>,
}

/// Build the HTTP application.
pub fn app(s: Served) -> Result<Router, ServeError> {
    let have: Vec<String> = s.members.iter().map(|m| m.0.clone()).collect();
    let mut member_of = Vec::new();
    let mut missing = Vec::new();
    for m in s.router.models() {
        match have.iter().position(|h| h == m) {
            Some(i) => member_of.push(i),
            None => missing.push(m.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(ServeError::MissingModels { missing, have });
    }
    let (tx, rx) = std::sync::mpsc::channel::<EmbedJob>();
    let embedder = s.embedder;
    std::thread::Builder::new()
        .name("rgd-serve-embed".into())
        .spawn(move || embed_worker(embedder.as_ref(), rx))
        .map_err(|e| ServeError::Worker(e.to_string()))?;
    let st = Arc::new(St {
        name: s.name,
        router: s.router,
        members: s.members,
        member_of,
        token: s.token,
        max_body: s.max_body_bytes,
        body_timeout: s.limits.body_timeout,
        embed_tx: tx,
    });
    Ok(Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .fallback(not_found)
        .with_state(st))
}

/// Serve `app` on `listener` under `limits` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
) -> std::io::Result<()> {
    serve_with_limits(listener, app, limits, std::future::pending()).await
}

/// Serve under `limits` until Ctrl-C (SIGINT), letting the requests in progress finish.
pub async fn serve_until_ctrl_c(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
) -> std::io::Result<()> {
    serve_with_limits(listener, app, limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

/// Embeds queries in batches: it waits for one, takes every other query already queued (up
/// to 64), embeds them together and answers each.
pub(crate) fn embed_worker(embedder: &dyn Embedder, rx: std::sync::mpsc::Receiver<EmbedJob>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 64 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let texts: Vec<&str> = jobs.iter().map(|j| j.0.as_str()).collect();
        // a panicking embedder fails this batch's requests, not the worker (which every
        // later request needs)
        let embedded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| embedder.embed(&texts)));
        let failure = match embedded {
            Ok(Ok(m)) if m.nrows() == jobs.len() => {
                for (i, (_, reply)) in jobs.into_iter().enumerate() {
                    let _ = reply.send(Ok(m.row(i).to_vec()));
                }
                continue;
            }
            Ok(Ok(m)) => format!(
                "the embedder returned {} rows for {} queries",
                m.nrows(),
                jobs.len()
            ),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => format!("the embedder panicked: {}", panic_message(&*panic)),
        };
        for (_, reply) in jobs {
            let _ = reply.send(Err(failure.clone()));
        }
    }
}

/// The text a panic was raised with (`panic!("...")` carries a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// An error reply, boxed (a `Response` is large to pass around in `Result`s).
type Rejection = Box<Response>;

/// An OpenAI-style error reply.
pub(crate) fn error(
    status: StatusCode,
    kind: &str,
    code: &str,
    msg: impl Into<String>,
) -> Response {
    (
        status,
        axum::Json(
            json!({"error": {"message": msg.into(), "type": kind, "param": null, "code": code}}),
        ),
    )
        .into_response()
}

pub(crate) fn bad_request(msg: impl Into<String>) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_request",
        msg,
    )
}

pub(crate) async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "not_found",
        "no such endpoint (this server has GET /health, GET /v1/models, POST /v1/chat/completions)",
    )
}

/// The router's decision for a query.
pub(crate) struct Decision {
    /// Pool member indices, best first.
    pub(crate) ranked: Vec<usize>,
    /// Router scores, in the router's model order.
    pub(crate) scores: Vec<f64>,
    pub(crate) routing_ms: f64,
}

pub(crate) async fn route(st: &Arc<St>, query: &str) -> Result<Decision, Rejection> {
    let t0 = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = st.embed_tx.send((query.to_string(), tx));
    if sent.is_err() {
        return Err(Box::new(internal("the embedding worker is gone")));
    }
    let emb = match rx.await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return Err(Box::new(internal(format!("embedding the query: {e}")))),
        Err(_) => return Err(Box::new(internal("the embedding worker is gone"))),
    };
    let q = rgd_core::Query {
        id: "query",
        text: query,
        embedding: ndarray::ArrayView1::from(&emb[..]),
    };
    let mut scores = vec![0.0; st.router.models().len()];
    // a router that panics on one query fails that request (a 500 naming it); the server
    // goes on serving the others
    let scored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        st.router.score(&q, &mut scores)
    }));
    let failed = |why: String| Box::new(internal(format!("router `{}`: {why}", st.name)));
    match scored {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(failed(e.to_string())),
        Err(panic) => {
            return Err(failed(format!(
                "it panicked on this query: {}",
                panic_message(&*panic)
            )));
        }
    }
    if let Some(m) = scores.iter().position(|x| x.is_nan()) {
        return Err(failed(format!(
            "its score of `{}` is {} (not a number)",
            st.router.models()[m],
            scores[m]
        )));
    }
    let ranked = rgd_core::rank(&scores)
        .into_iter()
        .map(|m| st.member_of[m])
        .collect();
    Ok(Decision {
        ranked,
        scores,
        routing_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

pub(crate) fn internal(msg: impl Into<String>) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "internal_error",
        msg,
    )
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn completion_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "chatcmpl-rgd-{}-{}",
        now(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `x-rgd-route` header: `mode; models a,b; scores a=0.61,b=0.2`.
pub(crate) fn route_header(st: &St, d: &Decision, mode: &str, chosen: &[usize]) -> HeaderValue {
    let name = |i: usize| st.members[i].0.as_str();
    let scores: Vec<String> = st
        .router
        .models()
        .iter()
        .zip(&d.scores)
        .map(|(m, s)| format!("{m}={s:.4}"))
        .collect();
    let v = format!(
        "{mode}; models {}; scores {}",
        chosen
            .iter()
            .map(|&i| name(i))
            .collect::<Vec<_>>()
            .join(","),
        scores.join(",")
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("see the rgd field"))
}

pub(crate) fn ranking_json(st: &St, d: &Decision) -> Value {
    let pos = |i: usize| st.member_of.iter().position(|&m| m == i).unwrap_or(0);
    Value::Array(
        d.ranked
            .iter()
            .map(|&i| json!({"model": st.members[i].0, "score": d.scores[pos(i)]}))
            .collect(),
    )
}

/// Run one backend call off the async threads.
pub(crate) async fn call(
    backend: Arc<dyn LlmBackend>,
    req: GenerateRequest,
) -> Result<rgd_core::Generation, String> {
    match tokio::task::spawn_blocking(move || backend.generate(&req)).await {
        Ok(Ok(g)) => Ok(g),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the call panicked: {e}")),
    }
}

pub(crate) fn completion(model: &str, text: &str, n_tokens: usize, rgd: Value) -> Value {
    json!({
        "id": completion_id(),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": n_tokens, "total_tokens": n_tokens},
        "rgd": rgd,
    })
}

pub(crate) async fn chat(State(st): State<Arc<St>>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = authorized(&st, &headers) {
        return *r;
    }
    // a declared length over the limit is refused before a byte of it is read
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_body as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!(
                "the declared body of {} bytes is over the limit of {} bytes",
                declared.unwrap_or_default(),
                st.max_body
            ),
        );
    }
    let read = tokio::time::timeout(st.body_timeout, axum::body::to_bytes(body, st.max_body));
    let bytes: Bytes = match read.await {
        Ok(Ok(b)) => b,
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    st.body_timeout.as_secs_f64()
                ),
            );
        }
        Ok(Err(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                format!(
                    "the request body is over the limit of {} bytes",
                    st.max_body
                ),
            );
        }
    };
    let v: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("the body is not valid JSON: {e}")),
    };
    let chat = match parse_chat(&st, &v) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match chat.target {
        Target::Direct(i) => {
            let d = Decision {
                ranked: vec![i],
                scores: Vec::new(),
                routing_ms: 0.0,
            };
            if chat.stream {
                return stream(
                    st,
                    chat,
                    d,
                    json!({"route": "direct"}),
                    HeaderValue::from_static("direct"),
                )
                .await;
            }
            match call(st.members[i].1.clone(), chat.req).await {
                Ok(g) => axum::Json(completion(
                    &chat.model,
                    &g.text,
                    g.n_tokens,
                    json!({"route": "direct", "answered_by": st.members[i].0}),
                ))
                .into_response(),
                Err(e) => error(
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    "backend_failed",
                    format!("`{}`: {e}", st.members[i].0),
                ),
            }
        }
        Target::Route { top3 } => {
            let d = match route(&st, &chat.query).await {
                Ok(d) => d,
                Err(r) => return *r,
            };
            if top3 {
                vote(st, chat, d).await
            } else if chat.stream {
                let rgd = json!({"router": st.name, "mode": "top1", "ranking": ranking_json(&st, &d), "routing_ms": d.routing_ms});
                let h = route_header(&st, &d, "top1", &d.ranked[..1]);
                stream(st, chat, d, rgd, h).await
            } else {
                top1(st, chat, d).await
            }
        }
    }
}

pub(crate) fn with_headers(mut r: Response, route: HeaderValue, routing_ms: f64) -> Response {
    r.headers_mut().insert("x-rgd-route", route);
    if let Ok(v) = HeaderValue::from_str(&format!("{routing_ms:.3}")) {
        r.headers_mut().insert("x-rgd-routing-ms", v);
    }
    r
}

/// Top-1: the best-ranked model answers; if its backend fails, the next one, and so on.
pub(crate) async fn top1(st: Arc<St>, chat: Chat, d: Decision) -> Response {
    let mut fallbacks = Vec::new();
    for &i in &d.ranked {
        match call(st.members[i].1.clone(), chat.req.clone()).await {
            Ok(g) => {
                let rgd = json!({
                    "router": st.name, "mode": "top1", "ranking": ranking_json(&st, &d),
                    "chosen": [st.members[d.ranked[0]].0], "answered_by": st.members[i].0,
                    "fallbacks": fallbacks, "routing_ms": d.routing_ms,
                });
                let r =
                    axum::Json(completion(&chat.model, &g.text, g.n_tokens, rgd)).into_response();
                return with_headers(r, route_header(&st, &d, "top1", &[i]), d.routing_ms);
            }
            Err(e) => fallbacks.push(json!({"model": st.members[i].0, "error": e})),
        }
    }
    all_failed(fallbacks)
}

/// 502: every ranked model's backend failed (each failure listed).
pub(crate) fn all_failed(fallbacks: Vec<Value>) -> Response {
    error(
        StatusCode::BAD_GATEWAY,
        "server_error",
        "all_backends_failed",
        format!("every ranked model failed: {}", Value::Array(fallbacks)),
    )
}

/// Top-3 vote: the three best-ranked models answer (a failed one is replaced by the next
/// ranked); their option letters are voted, ties going to the better-ranked side, and the
/// best-ranked reply with the winning letter is returned. Without any letter, the
/// best-ranked reply.
pub(crate) async fn vote(st: Arc<St>, chat: Chat, d: Decision) -> Response {
    let k = d.ranked.len().min(3);
    let mut answers: Vec<(usize, usize, rgd_core::Generation)> = Vec::new(); // (rank, member, reply)
    let mut fallbacks = Vec::new();
    let mut next = 0usize;
    while answers.len() < k && next < d.ranked.len() {
        let wave: Vec<(usize, usize)> = (next..d.ranked.len().min(next + k - answers.len()))
            .map(|r| (r, d.ranked[r]))
            .collect();
        next += wave.len();
        let calls = wave
            .iter()
            .map(|&(_, i)| call(st.members[i].1.clone(), chat.req.clone()));
        let results = futures_util::future::join_all(calls).await;
        for ((r, i), res) in wave.into_iter().zip(results) {
            match res {
                Ok(g) => answers.push((r, i, g)),
                Err(e) => fallbacks.push(json!({"model": st.members[i].0, "error": e})),
            }
        }
    }
    if answers.is_empty() {
        return all_failed(fallbacks);
    }
    answers.sort_by_key(|a| a.0);
    let letters: Vec<Option<usize>> = answers
        .iter()
        .map(|a| {
            rgd_pool::extract::extract_answer(&a.2.text, rgd_core::N_LETTERS).map(|l| l.index())
        })
        .collect();
    // the offline metric's vote rule; a live reply has no calibrated confidence, so ties go
    // to the better-ranked side
    let ballots: Vec<(rgd_core::Letter, f64)> = answers
        .iter()
        .zip(&letters)
        .filter_map(|(a, l)| Some((rgd_core::Letter::from_index((*l)?)?, -(a.0 as f64))))
        .collect();
    let winner = rgd_core::eval::plurality(&ballots).map(|l| l.index());
    let pick = match winner {
        Some(w) => letters.iter().position(|l| *l == Some(w)).unwrap_or(0),
        None => 0,
    };
    let letter_name = |l: Option<usize>| l.map(|i| ((b'A' + i as u8) as char).to_string());
    let votes: Vec<Value> = answers
        .iter()
        .zip(&letters)
        .map(|(a, l)| json!({"model": st.members[a.1].0, "rank": a.0 + 1, "letter": letter_name(*l), "text": a.2.text}))
        .collect();
    let chosen: Vec<usize> = answers.iter().map(|a| a.1).collect();
    let rgd = json!({
        "router": st.name, "mode": "top3", "ranking": ranking_json(&st, &d),
        "chosen": chosen.iter().map(|&i| st.members[i].0.clone()).collect::<Vec<_>>(),
        "answered_by": st.members[answers[pick].1].0,
        "consensus": letter_name(winner),
        "agreement": winner.map(|w| letters.iter().filter(|l| **l == Some(w)).count()),
        "votes": votes, "fallbacks": fallbacks, "routing_ms": d.routing_ms,
    });
    let g = &answers[pick].2;
    let r = axum::Json(completion(&chat.model, &g.text, g.n_tokens, rgd)).into_response();
    with_headers(r, route_header(&st, &d, "top3", &chosen), d.routing_ms)
}
