//! `rgd serve` routing overhead under 64 concurrent clients: MiniLM embeds each query
//! (batched as they arrive), a CASCAL router trained on a simulated world scores it, and
//! stub backends answer at once (or after a fixed "model time"), so what is measured is the
//! server's own work. Each client sends chat requests back to back for `--secs` seconds.
//!
//! `cargo bench -p rgd-serve [-- --secs S] [--precision int8]` (needs the MiniLM asset:
//! `rgd assets fetch minilm`).
//! Prints, per scenario: requests/s, the server's routing time (embedding + routing, the
//! `x-rgd-routing-ms` header) p50/p99, and the client-observed latency minus the stub's
//! model time p50/p99.

use rgd_core::{
    ChoiceScores, GenerateRequest, Generation, LlmBackend, Registry, Router, ScoreRequest,
};
use rgd_embedders as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Stub {
    name: String,
    delay: Duration,
}

impl LlmBackend for Stub {
    fn identity(&self) -> String {
        format!("stub:{}", self.name)
    }
    fn score_choices(&self, _: &ScoreRequest) -> rgd_core::Result<ChoiceScores> {
        Err(rgd_core::Error::Data("not used".into()))
    }
    fn generate(&self, _: &GenerateRequest) -> rgd_core::Result<Generation> {
        std::thread::sleep(self.delay);
        Ok(Generation {
            text: format!("{} says: the answer is (B)", self.name),
            mean_logprob: -0.1,
            n_tokens: 8,
            seconds: self.delay.as_secs_f64(),
        })
    }
}

const QUERIES: &[&str] = &[
    "Which organelle produces most of the cell's ATP?",
    "What is the derivative of sin(x) with respect to x?",
    "Which amendment to the US constitution abolished slavery?",
    "A ball is dropped from 20 m. How long until it hits the ground?",
    "Which vitamin deficiency causes scurvy?",
    "What does the sociological term 'anomie' describe?",
    "Which gas makes up most of Earth's atmosphere?",
    "What is the time complexity of binary search?",
];

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

fn scenario(delay_ms: u64, think_ms: u64, clients: usize, secs: f64, top3: bool, precision: &str) {
    let world = rgd_sim::Simulated {
        subjects: 8,
        train_per_subject: 100,
        test_per_subject: 10,
        dim: 384,
        ..Default::default()
    }
    .generate()
    .expect("world");
    let ctx = rgd_core::Context::new(".");
    let router = rgd_router_cascal::Cascal::default()
        .train(&world.train, &world.models, &ctx)
        .expect("CASCAL trains");
    let registry = Registry::builtin().expect("registry");
    let mut spec = toml::Table::new();
    spec.insert("type".into(), "minilm".into());
    spec.insert("precision".into(), precision.into());
    let embedder = registry
        .build_embedder(spec, "bench")
        .expect("MiniLM (run `rgd assets fetch minilm`)");
    embedder.embed(&["warm up"]).expect("MiniLM embeds");
    let members: Vec<(String, Arc<dyn LlmBackend>)> = world
        .models
        .iter()
        .map(|m| {
            let b: Arc<dyn LlmBackend> = Arc::new(Stub {
                name: m.clone(),
                delay: Duration::from_millis(delay_ms),
            });
            (m.clone(), b)
        })
        .collect();
    let app = rgd_serve::app(rgd_serve::Served {
        name: "cascal".into(),
        router,
        embedder,
        members,
        token: None,
        max_body_bytes: 1 << 20,
        limits: rgd_serve::Limits::default(),
    })
    .expect("app");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(512)
        .build()
        .expect("runtime");
    let (mut routing, mut latency, wall) = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(rgd_serve::serve(
            listener,
            app,
            rgd_serve::Limits::default(),
        ));
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/v1/chat/completions");
        let model = if top3 {
            "rgd:cascal:top3"
        } else {
            "rgd:cascal"
        };
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let client = client.clone();
                let url = url.clone();
                tokio::spawn(async move {
                    let mut routing = Vec::new();
                    let mut latency = Vec::new();
                    let mut k = c;
                    // a client that thinks between requests starts at a random moment too
                    let think = || Duration::from_millis(rand::random_range(0..=think_ms));
                    tokio::time::sleep(think()).await;
                    while Instant::now() < deadline {
                        let body = serde_json::json!({
                            "model": model,
                            "messages": [{"role": "user", "content": QUERIES[k % QUERIES.len()]}],
                        });
                        k += 1;
                        let t = Instant::now();
                        let r = client.post(&url).json(&body).send().await.expect("request");
                        let ms: f64 = r
                            .headers()
                            .get("x-rgd-routing-ms")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok())
                            .expect("x-rgd-routing-ms");
                        let status = r.status();
                        let _ = r.bytes().await.expect("body");
                        assert!(status.is_success(), "{status}");
                        latency.push(t.elapsed().as_secs_f64() * 1e3 - delay_ms as f64);
                        routing.push(ms);
                        tokio::time::sleep(think()).await;
                    }
                    (routing, latency)
                })
            })
            .collect();
        let mut routing = Vec::new();
        let mut latency = Vec::new();
        for t in tasks {
            let (r, l) = t.await.expect("client");
            routing.extend(r);
            latency.extend(l);
        }
        (routing, latency, t0.elapsed().as_secs_f64())
    });
    let n = routing.len();
    println!(
        "{clients} clients, stub model time {delay_ms} ms, think time 0-{think_ms} ms, {}: {n} requests in {wall:.1} s = {:.0} req/s | routing (embed + score) p50 {:.2} ms p99 {:.2} ms | client latency minus model time p50 {:.2} ms p99 {:.2} ms",
        if top3 { "top-3 vote" } else { "top-1" },
        n as f64 / wall,
        pct(&mut routing, 0.5),
        pct(&mut routing, 0.99),
        pct(&mut latency, 0.5),
        pct(&mut latency, 0.99),
    );
}

fn main() {
    let secs: f64 = std::env::args()
        .skip_while(|a| a != "--secs")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let precision = std::env::args()
        .skip_while(|a| a != "--precision")
        .nth(1)
        .unwrap_or_else(|| "f32".into());
    println!("rgd serve: MiniLM ({precision}) + CASCAL (8 simulated models), stub backends");
    // clients of a model that answers in ~0.5 s, each pausing 0-1 s between requests (so
    // they are not in lockstep): the load a served router sees
    scenario(500, 1000, 64, secs, false, &precision);
    scenario(500, 1000, 64, secs, true, &precision);
    // saturation: backends answer at once and clients never pause, so 64 (or 16) requests
    // are always waiting for embedding + routing; latency is then clients / throughput
    scenario(0, 0, 64, secs, false, &precision);
    scenario(0, 0, 64, secs, true, &precision);
    scenario(0, 0, 16, secs, false, &precision);
}
