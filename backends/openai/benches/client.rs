//! Client throughput and per-call overhead against a fast local stub server (axum, in this
//! process, sharing the machine's cores with the client).
//!
//! `cargo bench -p rgd-backend-openai` prints:
//! - requests/s with 64 requests in flight through the async client;
//! - requests/s through the blocking backend the way the pool drives it (64 threads, each
//!   call on the shared runtime);
//! - the latency of one call at a time (p50/p99): the client's whole overhead plus the stub's
//!   reply over loopback.

use axum::routing::post;
use rgd_backend_openai::OpenAi;
use rgd_core::{Message, ScoreRequest};
use std::time::Instant;

const REPLY: &str = r#"{"id":"x","object":"chat.completion","created":0,"model":"stub","choices":[{"index":0,"message":{"role":"assistant","content":"B"},"finish_reason":"length","logprobs":{"content":[{"token":"B","logprob":-0.3,"top_logprobs":[{"token":"B","logprob":-0.3},{"token":"A","logprob":-1.6},{"token":" C","logprob":-2.9},{"token":"D","logprob":-3.5}]}]}}],"usage":{"prompt_tokens":40,"completion_tokens":1,"total_tokens":41}}"#;

fn request() -> ScoreRequest {
    ScoreRequest {
        messages: vec![Message {
            role: "user".into(),
            content: "Which gas makes up most of Earth's atmosphere?\nA. Oxygen\nB. Nitrogen\nC. Argon\nD. Carbon dioxide\nAnswer with the letter.".into(),
        }],
        n_options: 4,
        answer_prefix: "Answer:".into(),
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

fn main() {
    // the stub: its own runtime (one worker), answering every request at once
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = server.block_on(async {
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            post(|| async { ([("content-type", "application/json")], REPLY) }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    });
    let mut cfg = OpenAi::new(format!("http://{addr}/v1"), "stub");
    cfg.max_concurrency = 64;
    let n = 40_000usize;
    println!(
        "OpenAI client against a local stub ({n} letter-scoring calls per run, 2 cores shared with the stub)"
    );

    // async: 64 in flight
    let client = std::sync::Arc::new(cfg.connect().expect("client"));
    let rt = rgd_backend_openai::runtime().expect("runtime");
    let req = std::sync::Arc::new(request());
    for run in 0..2 {
        let t0 = Instant::now();
        rt.block_on(async {
            let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let (client, req, next) = (client.clone(), req.clone(), next.clone());
                    tokio::spawn(async move {
                        while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                            client.score(&req).await.expect("scores");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
        });
        let s = t0.elapsed().as_secs_f64();
        if run == 1 {
            println!(
                "async client, 64 in flight:            {:>7.0} requests/s",
                n as f64 / s
            );
        }
    }

    // blocking backend, as the pool drives it
    let backend = rgd_core::Registry::builtin()
        .expect("registry")
        .build_backend(
            toml::toml! { type = "openai" model = "stub" max_concurrency = 64 }
                .into_iter()
                .chain([(
                    "base_url".to_string(),
                    toml::Value::String(format!("http://{addr}/v1")),
                )])
                .collect(),
            "bench",
        )
        .expect("backend");
    let items: Vec<ScoreRequest> = (0..n).map(|_| request()).collect();
    let t0 = Instant::now();
    let out = rgd_core::parallel_map(&items, backend.parallelism(), |_, r| {
        backend.score_choices(r)
    });
    let s = t0.elapsed().as_secs_f64();
    assert!(
        out.iter()
            .all(|r| r.as_ref().is_ok_and(|c| c.logprobs.len() == 4))
    );
    println!(
        "blocking backend, 64 threads (pool):   {:>7.0} requests/s",
        n as f64 / s
    );

    // one at a time
    let mut lat = Vec::new();
    for item in items.iter().take(5_000) {
        let t = Instant::now();
        backend.score_choices(item).expect("scores");
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "one call at a time (client + stub):    p50 {:.3} ms  p99 {:.3} ms",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
}
