//! A real OpenAI-compatible server: llama-cpp-python (`python -m llama_cpp.server`) serving
//! the local GGUF models. A run generates (Qwen2.5-Coder-0.5B), answers (SmolLM2 through the
//! server beside Gemma in-process) and embeds (SmolLM2's embeddings) through it; then
//! `rgd serve` routes chat requests to the models CASCAL chose.
//!
//! Needs `RGD_LLAMA_SERVER_PYTHON` (a Python with llama-cpp-python[server]: set up by
//! `scripts/setup-llama-server.sh`, which `scripts/test.sh` runs) and the assets
//! `smollm2-135m gemma3-270m qwen2.5-coder-0.5b mmlu`.

use crate::common::{rgd_run, stderr};
use crate::openai::{post, serve};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct LlamaServer {
    child: Child,
    base_url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_llama_server(dir: &Path) -> LlamaServer {
    let python = std::env::var("RGD_LLAMA_SERVER_PYTHON").unwrap_or_else(|_| {
        panic!("RGD_LLAMA_SERVER_PYTHON is not set: run scripts/setup-llama-server.sh (scripts/test.sh does) and export the Python it prints")
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let assets = rgd_assets::assets_dir();
    let gguf = |a: &str| assets.join(a).join("model.gguf").display().to_string();
    for a in ["smollm2-135m", "qwen2.5-coder-0.5b"] {
        assert!(
            Path::new(&gguf(a)).exists(),
            "asset {a} missing: rgd assets fetch {a}"
        );
    }
    let config = json!({
        "host": "127.0.0.1", "port": port,
        "models": [
            {"model": gguf("smollm2-135m"), "model_alias": "smollm2", "n_ctx": 2048, "logits_all": true, "n_threads": 2, "verbose": false},
            {"model": gguf("qwen2.5-coder-0.5b"), "model_alias": "qwen05", "n_ctx": 2048, "logits_all": true, "n_threads": 2, "verbose": false},
            {"model": gguf("smollm2-135m"), "model_alias": "smollm2-embed", "n_ctx": 512, "embedding": true, "n_threads": 2, "verbose": false}
        ]
    });
    let cfg = dir.join("llama-server.json");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let child = Command::new(&python)
        .args(["-m", "llama_cpp.server", "--config_file"])
        .arg(&cfg)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} -m llama_cpp.server: {e}"));
    let server = LlamaServer {
        child,
        base_url: format!("http://127.0.0.1:{port}/v1"),
    };
    let t0 = Instant::now();
    loop {
        if reqwest::blocking::get(format!("{}/models", server.base_url))
            .is_ok_and(|r| r.status().is_success())
        {
            return server;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "llama_cpp.server did not come up on port {port}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn a_real_openai_server_generates_answers_and_embeds_and_serve_routes_to_its_models() {
    let t = tempfile::tempdir().unwrap();
    let server = start_llama_server(t.path());
    let url = &server.base_url;
    let p = t.path().join("server.toml");
    std::fs::write(
        &p,
        format!(
            r#"[cache]
path = "{cache}"

[backends.gen]
type = "openai"
base_url = "{url}"
model = "qwen05"
max_concurrency = 1

[generate]
descriptions = "{desc}"
subjects = ["high school biology", "marketing"]

[generate.generator]
type = "llm"
backend = "gen"
questions_per_call = 3
calls_per_subject = 1
example = true
prefill = true
seed = 1

[questions.test]
type = "benchmark"
name = "mmlu"
subjects = ["high school biology", "marketing"]
per_subject = 4
holdout = 0.5
part = "main"
seed = 1

[pool.smollm2]
type = "openai"
base_url = "{url}"
model = "smollm2"
max_concurrency = 1

[pool.gemma]
type = "llamacpp"
model = "gemma3-270m"

[embedder]
type = "openai"
base_url = "{url}"
model = "smollm2-embed"

[routers.cascal]
type = "cascal"

[routers.best_single]
type = "best_single"
"#,
            cache = t.path().join("calls.sqlite").display(),
            desc = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("descriptions/mmlu.toml")
                .display(),
        ),
    )
    .unwrap();
    let out = t.path().join("out");
    let o = rgd_run(t.path(), &p, &out);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    // the server returned log-probabilities for scoring and generation: no fallback
    assert!(!err.contains("no log-probabilities"), "{err}");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(
        r["n_train"].as_u64().unwrap() >= 1,
        "Qwen wrote no usable question: {err}"
    );
    assert_eq!(r["n_test"], 8);
    assert!(
        r["references"]["single"]["smollm2"].as_f64().is_some(),
        "{r}"
    );
    assert!(r["call_failures"].is_null(), "{}", r["call_failures"]);
    let calls = std::fs::read_to_string(out.join("generated/calls.jsonl")).unwrap();
    assert!(calls.contains("[QUESTION]"), "{calls}");
    // a rerun is served by the cache: no model is called
    let o = rgd_run(t.path(), &p, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["calls"]["model_calls"], 0, "{}", r["calls"]);

    // rgd serve: the trained CASCAL answers through the models it ranks
    let s = serve(&out.join("routers/cascal.json"), &p, &[], &[]);
    let q = "Which organelle makes most of a cell's ATP?\nA. Ribosome\nB. Mitochondrion\nC. Golgi body\nD. Nucleus\nAnswer with the letter.";
    let ask = |model: &str| json!({"model": model, "temperature": 0, "max_tokens": 12, "seed": 7, "messages": [{"role": "user", "content": q}]});
    let direct = |model: &str| -> String {
        let v: Value = post(&s, &ask(model), None).json().unwrap();
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let v: Value = post(&s, &ask("rgd:cascal"), None).json().unwrap();
    let first = v["rgd"]["ranking"][0]["model"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v["rgd"]["answered_by"], first.as_str(), "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty(), "{v}");
    // greedy decoding: the same request sent to the chosen model directly gives the same text
    assert_eq!(text, direct(&first), "the top-1 reply is not {first}'s");
    let v: Value = post(&s, &ask("rgd:cascal:top3"), None).json().unwrap();
    let votes = v["rgd"]["votes"].as_array().unwrap();
    assert_eq!(votes.len(), 2, "{v}");
    for vote in votes {
        let m = vote["model"].as_str().unwrap();
        assert_eq!(
            vote["text"].as_str().unwrap(),
            direct(m),
            "{m}'s vote is not its reply"
        );
    }
    let by = v["rgd"]["answered_by"].as_str().unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str().unwrap(),
        direct(by)
    );
    // streaming from the real server gives the same text
    let mut body = ask("smollm2");
    body["stream"] = json!(true);
    let (streamed, _) = crate::openai::sse(&post(&s, &body, None).text().unwrap());
    assert_eq!(streamed, direct("smollm2"));
}
