//! A fault-injecting OpenAI-compatible server for the tests (axum, on its own thread).
//!
//! Models (the request's `model`):
//! - `steady`, `other`, `third`: answer at once. Letter scoring: a letter picked from the
//!   question text and the model name, with `top_logprobs`. Generation: `[model NAME] The
//!   answer is (X)` (X from the same hash), or, for the generator's instruction, question
//!   blocks.
//! - `flaky`: like `steady`, but the first attempt of every distinct request fails, in turn:
//!   429 with `Retry-After`, 500, a hang (longer than the client's timeout), a truncated JSON
//!   body, an invalid JSON body.
//! - `nologprobs`: answers with the letter only, without log-probabilities.
//! - `down`: always 503 (until [`Fake::set_down`] lifts it).
//! - `shortctx`: 400 "maximum context length" (the prompt does not fit); `missing`: 404.
//! - `/v1/completions` (any model): the letter from the prompt, legacy `logprobs` shape.
//! - `embed` (embeddings): a deterministic 32-d bag-of-characters vector per text.
//!
//! Any model can be taken down with [`Fake::set_down`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counters the tests read.
#[derive(Default, Debug)]
pub struct Counts {
    /// Requests per model.
    pub requests: BTreeMap<String, usize>,
    /// Faults served, by kind.
    pub faults: BTreeMap<String, usize>,
    /// Distinct requests seen (for `flaky`'s first-attempt faults).
    seen: BTreeSet<String>,
    /// Models answering 503.
    down: BTreeSet<String>,
}

/// The running fake.
#[derive(Clone)]
pub struct Fake {
    /// Its API root, `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    counts: Arc<Mutex<Counts>>,
}

impl Fake {
    /// Start it on a free port.
    pub fn start() -> Fake {
        let counts = Arc::new(Mutex::new(Counts::default()));
        counts.lock().unwrap().down.insert("down".into());
        let (tx, rx) = std::sync::mpsc::channel();
        let c = counts.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new()
                    .route("/v1/chat/completions", post(chat))
                    .route("/v1/completions", post(completions))
                    .route("/v1/embeddings", post(embeddings))
                    .with_state(c);
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        Fake {
            base_url: format!("http://{addr}/v1"),
            counts,
        }
    }

    /// Requests `model` received so far.
    pub fn requests(&self, model: &str) -> usize {
        *self
            .counts
            .lock()
            .unwrap()
            .requests
            .get(model)
            .unwrap_or(&0)
    }

    /// Faults served so far, by kind.
    pub fn faults(&self) -> BTreeMap<String, usize> {
        self.counts.lock().unwrap().faults.clone()
    }

    /// Take `model` down (503 on every request) or bring it back.
    pub fn set_down(&self, model: &str, down: bool) {
        let mut c = self.counts.lock().unwrap();
        if down {
            c.down.insert(model.into());
        } else {
            c.down.remove(model);
        }
    }
}

/// A stable small hash.
fn h(s: &str) -> u64 {
    s.bytes().fold(1469598103934665603u64, |a, b| {
        (a ^ b as u64).wrapping_mul(1099511628211)
    })
}

/// The letter `model` answers for the conversation `text`: each model is right about
/// different questions, so routers have something to learn.
pub fn letter(model: &str, text: &str) -> char {
    (b'A' + (h(&format!("{model}|{text}")) % 4) as u8) as char
}

fn conversation(body: &Value) -> String {
    body["messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|m| m["role"] != "assistant")
                .map(|m| m["content"].as_str().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn blocks(n: usize, seed: u64) -> String {
    (0..n)
        .map(|k| {
            let x = seed.wrapping_add(k as u64);
            format!(
                "[QUESTION] Test question {x} about cells number {k}?\n[OPTION A] Alpha {x}\n[OPTION B] Beta {x}\n[OPTION C] Gamma {x}\n[OPTION D] Delta {x}\n[ANSWER] {}\n#####\n",
                (b'A' + (x % 4) as u8) as char
            )
        })
        .collect()
}

async fn chat(State(c): State<Arc<Mutex<Counts>>>, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("").to_string();
    let key = body.to_string();
    let fault = {
        let mut c = c.lock().unwrap();
        *c.requests.entry(model.clone()).or_default() += 1;
        if c.down.contains(&model) {
            *c.faults.entry("503".into()).or_default() += 1;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": {"message": format!("{model} is down"), "type": "server_error"}})),
            )
                .into_response();
        }
        if model == "shortctx" {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": "This model's maximum context length is 16 tokens", "type": "invalid_request_error"}})),
            )
                .into_response();
        }
        if model == "missing" {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": {"message": "The model `missing` does not exist", "type": "invalid_request_error"}})),
            )
                .into_response();
        }
        if model == "flaky" && c.seen.insert(key.clone()) {
            let kind = ["429", "500", "hang", "truncated", "invalid"][(h(&key) % 5) as usize];
            *c.faults.entry(kind.into()).or_default() += 1;
            Some(kind)
        } else {
            None
        }
    };
    match fault {
        Some("429") => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "0")],
                Json(json!({"error": {"message": "slow down", "type": "rate_limit"}})),
            )
                .into_response();
        }
        Some("500") => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
        }
        Some("hang") => {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Some("truncated") => {
            return (
                [("content-type", "application/json")],
                "{\"choices\": [{\"message\": {\"content\": \"A",
            )
                .into_response();
        }
        Some("invalid") => {
            return (
                [("content-type", "application/json")],
                "<html>bad gateway</html>",
            )
                .into_response();
        }
        _ => {}
    }
    let text = conversation(&body);
    let max_tokens = body["max_tokens"].as_u64().unwrap_or(16);
    let l = letter(&model, &text);
    let logprobs = body["logprobs"].as_bool().unwrap_or(false) && model != "nologprobs";
    let stream = body["stream"].as_bool().unwrap_or(false);
    let (content, lp) = if max_tokens == 1 {
        // letter scoring
        let top: Vec<Value> = "ABCD"
            .chars()
            .map(|x| {
                json!({"token": if x == 'C' { format!(" {x}") } else { x.to_string() },
                       "logprob": if x == l { -0.2 } else { -2.5 }})
            })
            .collect();
        (
            l.to_string(),
            json!({"content": [{"token": l.to_string(), "logprob": -0.2, "top_logprobs": top}]}),
        )
    } else if text.contains("[QUESTION]") && text.contains("#####") {
        // the generator's instruction
        let prefix = body["messages"]
            .as_array()
            .and_then(|a| a.last())
            .filter(|m| m["role"] == "assistant")
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_string();
        let b = blocks(2, body["seed"].as_u64().unwrap_or(0) % 1000);
        let b = b.strip_prefix(&prefix).unwrap_or(&b).to_string();
        (b, json!({"content": [{"token": "x", "logprob": -0.5}]}))
    } else {
        (
            format!("[model {model}] The answer is ({l})."),
            json!({"content": [{"token": "x", "logprob": -0.4}, {"token": "y", "logprob": -0.6}]}),
        )
    };
    if stream {
        let mut out = String::new();
        for piece in content.split_inclusive(' ') {
            let chunk = json!({"object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
            out.push_str(&format!("data: {chunk}\n\n"));
        }
        out.push_str("data: [DONE]\n\n");
        return ([("content-type", "text/event-stream")], out).into_response();
    }
    let mut choice = json!({"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"});
    if logprobs {
        choice["logprobs"] = lp;
    }
    Json(
        json!({"id": "x", "object": "chat.completion", "model": model, "choices": [choice],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}),
    )
    .into_response()
}

/// `/v1/completions` (a plain prompt): letter scoring with the legacy `logprobs` shape.
async fn completions(State(c): State<Arc<Mutex<Counts>>>, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("").to_string();
    *c.lock().unwrap().requests.entry(model.clone()).or_default() += 1;
    let prompt = body["prompt"].as_str().unwrap_or("");
    let l = letter(&model, prompt);
    let top: serde_json::Map<String, Value> = "ABCD"
        .chars()
        .map(|x| (format!(" {x}"), json!(if x == l { -0.1 } else { -3.0 })))
        .collect();
    Json(json!({"object": "text_completion", "model": model, "choices": [{"index": 0,
        "text": format!(" {l}"), "finish_reason": "length",
        "logprobs": {"tokens": [format!(" {l}")], "token_logprobs": [-0.1], "top_logprobs": [top]}}]}))
    .into_response()
}

async fn embeddings(State(c): State<Arc<Mutex<Counts>>>, Json(body): Json<Value>) -> Response {
    *c.lock()
        .unwrap()
        .requests
        .entry("embed".into())
        .or_default() += 1;
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().unwrap_or("").to_string())
            .collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut v = vec![0.0f64; 32];
            for b in t.to_lowercase().bytes() {
                v[(b % 32) as usize] += 1.0;
            }
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-9);
            json!({"object": "embedding", "index": i, "embedding": v.iter().map(|x| x / n).collect::<Vec<_>>()})
        })
        .collect();
    Json(json!({"object": "list", "data": data, "model": body["model"]})).into_response()
}
