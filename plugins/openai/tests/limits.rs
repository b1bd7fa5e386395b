//! The client's limits against local stub servers: requests in flight, requests per second,
//! and the round-robin over several base URLs.

use axum::extract::State;
use axum::routing::post;
use rgd_backend_openai::OpenAi;
use rgd_core::{Message, ScoreRequest};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Stats {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    served: AtomicUsize,
}

const REPLY: &str = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"A"},"logprobs":{"content":[{"token":"A","logprob":-0.1,"top_logprobs":[{"token":"A","logprob":-0.1},{"token":"B","logprob":-2.0}]}]}}]}"#;

async fn slow(State(s): State<Arc<Stats>>) -> ([(&'static str, &'static str); 1], &'static str) {
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    s.served.fetch_add(1, Ordering::SeqCst);
    ([("content-type", "application/json")], REPLY)
}

/// Start a stub on its own thread; its API root and counters.
fn stub() -> (String, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let st = stats.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route("/v1/chat/completions", post(slow))
                .with_state(st);
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (format!("http://{}/v1", rx.recv().unwrap()), stats)
}

fn req() -> ScoreRequest {
    ScoreRequest {
        messages: vec![Message {
            role: "user".into(),
            content: "Pick A or B.".into(),
        }],
        n_options: 2,
        answer_prefix: String::new(),
    }
}

fn run(cfg: &OpenAi, n: usize, workers: usize) {
    let client = cfg.connect().unwrap();
    let items: Vec<ScoreRequest> = (0..n).map(|_| req()).collect();
    // through the registry, as a pipeline builds it
    let mut table = toml::Table::try_from(cfg).unwrap();
    table.insert("type".into(), "openai".into());
    let backend = rgd_core::Registry::builtin()
        .unwrap()
        .build_backend(table, "test")
        .unwrap();
    assert_eq!(backend.identity(), client.identity());
    let out = rgd_core::parallel_map(&items, workers, |_, r| backend.score_choices(r));
    for o in out {
        let s = o.unwrap();
        assert!(s.logprobs[0] > s.logprobs[1]);
    }
}

#[test]
fn at_most_max_concurrency_requests_are_in_flight() {
    let (url, stats) = stub();
    let mut cfg = OpenAi::new(url, "m");
    cfg.max_concurrency = 3;
    run(&cfg, 24, 12);
    assert_eq!(stats.served.load(Ordering::SeqCst), 24);
    let max = stats.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "{max} requests in flight");
}

#[test]
fn requests_per_second_spaces_the_requests() {
    let (url, stats) = stub();
    let mut cfg = OpenAi::new(url, "m");
    cfg.max_concurrency = 16;
    cfg.requests_per_second = 20.0;
    let t0 = Instant::now();
    run(&cfg, 11, 11);
    // 11 requests at 20/s: the last one cannot start before 10 intervals of 50 ms
    assert!(
        t0.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(stats.served.load(Ordering::SeqCst), 11);
}

#[test]
fn several_base_urls_share_the_requests_round_robin() {
    let (a, sa) = stub();
    let (b, sb) = stub();
    let mut cfg = OpenAi::new(a, "m");
    cfg.base_urls = vec![b];
    run(&cfg, 10, 1);
    assert_eq!(sa.served.load(Ordering::SeqCst), 5);
    assert_eq!(sb.served.load(Ordering::SeqCst), 5);
}
