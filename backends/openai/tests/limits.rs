//! The client's limits against local stub servers: requests in flight, requests per second,
//! the round-robin over several base URLs, and retries (to the next server of a fleet, after
//! the server's `Retry-After`).

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
    /// Requests received, failed ones included.
    received: AtomicUsize,
    /// How many of the first requests fail with `fail_status`.
    fail_first: usize,
    fail_status: u16,
    /// `Retry-After` sent with a failure.
    retry_after: Option<&'static str>,
}

const REPLY: &str = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"A"},"logprobs":{"content":[{"token":"A","logprob":-0.1,"top_logprobs":[{"token":"A","logprob":-0.1},{"token":"B","logprob":-2.0}]}]}}]}"#;

async fn slow(State(s): State<Arc<Stats>>) -> axum::response::Response {
    if s.received.fetch_add(1, Ordering::SeqCst) < s.fail_first {
        let mut r = axum::response::Response::new(axum::body::Body::from(
            r#"{"error":{"message":"busy"}}"#,
        ));
        *r.status_mut() = axum::http::StatusCode::from_u16(s.fail_status).unwrap();
        if let Some(a) = s.retry_after {
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static(a));
        }
        return r;
    }
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    s.served.fetch_add(1, Ordering::SeqCst);
    let mut r = axum::response::Response::new(axum::body::Body::from(REPLY));
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Start a stub on its own thread; its API root and counters.
fn stub() -> (String, Arc<Stats>) {
    stub_with(Stats::default())
}

/// A stub with the given failure behaviour.
fn stub_with(stats: Stats) -> (String, Arc<Stats>) {
    let stats = Arc::new(stats);
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(slow))
        .with_state(stats.clone());
    (serve(app), stats)
}

/// Serve `app` on its own thread at a free local port; its API root.
fn serve(app: axum::Router) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{}/v1", rx.recv().unwrap())
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

#[test]
fn a_retry_goes_to_the_next_server_of_the_fleet() {
    // the first server fails every request; the fleet's next one answers
    let (bad, sbad) = stub_with(Stats {
        fail_first: usize::MAX,
        fail_status: 503,
        ..Stats::default()
    });
    let (good, sgood) = stub();
    let mut cfg = OpenAi::new(bad, "m");
    cfg.base_urls = vec![good];
    cfg.backoff_ms = 1;
    cfg.max_retries = 1;
    run(&cfg, 4, 1);
    // each request: one attempt on the failing server, its retry on the other one
    assert_eq!(sbad.received.load(Ordering::SeqCst), 4);
    assert_eq!(sbad.served.load(Ordering::SeqCst), 0);
    assert_eq!(sgood.received.load(Ordering::SeqCst), 4);
    assert_eq!(sgood.served.load(Ordering::SeqCst), 4);
}

#[test]
fn a_non_zero_retry_after_is_waited_for() {
    let (url, stats) = stub_with(Stats {
        fail_first: 1,
        fail_status: 429,
        retry_after: Some("1"),
        ..Stats::default()
    });
    let mut cfg = OpenAi::new(url, "m");
    // our own backoff is at most 1 ms: only the server's 1 s can make the wait long
    cfg.backoff_ms = 1;
    cfg.max_backoff_ms = 5_000;
    let t0 = Instant::now();
    run(&cfg, 1, 1);
    let waited = t0.elapsed();
    assert_eq!(stats.received.load(Ordering::SeqCst), 2);
    assert_eq!(stats.served.load(Ordering::SeqCst), 1);
    assert!(waited >= Duration::from_millis(1_000), "{waited:?}");
    // and capped by max_backoff_ms: the same server asking for an hour waits 300 ms
    let (url, stats) = stub_with(Stats {
        fail_first: 1,
        fail_status: 503,
        retry_after: Some("3600"),
        ..Stats::default()
    });
    let mut cfg = OpenAi::new(url, "m");
    cfg.backoff_ms = 1;
    cfg.max_backoff_ms = 300;
    let t0 = Instant::now();
    run(&cfg, 1, 1);
    let waited = t0.elapsed();
    assert_eq!(stats.served.load(Ordering::SeqCst), 1);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(30),
        "{waited:?}"
    );
}

/// A server that answers 401 and echoes the request's `Authorization` header.
async fn echo_auth(headers: axum::http::HeaderMap) -> axum::response::Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut r = axum::response::Response::new(axum::body::Body::from(format!(
        "{{\"error\":{{\"message\":\"invalid key: {auth}\"}}}}"
    )));
    *r.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
    r
}

#[test]
fn a_server_that_echoes_the_key_never_gets_it_into_the_error() {
    let url = serve(axum::Router::new().route("/v1/chat/completions", post(echo_auth)));
    // a variable the test runner sets, standing in for the key (setting one is `unsafe`,
    // which this crate forbids)
    let var = "CARGO_MANIFEST_DIR";
    let secret = std::env::var(var).expect("cargo sets it for tests");
    let mut cfg = OpenAi::new(&url, "stub-model");
    cfg.api_key_env = Some(var.into());
    cfg.max_retries = 0;
    let mut table = toml::Table::try_from(&cfg).unwrap();
    table.insert("type".into(), "openai".into());
    let backend = rgd_core::Registry::builtin()
        .unwrap()
        .build_backend(table, "test")
        .unwrap();
    let e = backend.score_choices(&req()).unwrap_err().to_string();
    assert!(e.contains("invalid key: Bearer <redacted>"), "{e}");
    assert!(!e.contains(&secret), "{e}");
}
