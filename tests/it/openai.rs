//! The `openai` backend against the fault-injecting server, and `rgd serve` with a router
//! trained in the test (needs the `mmlu` asset for the test questions).

use crate::common::{rgd, rgd_run, stderr};
use crate::fake_openai::{Fake, letter};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A pipeline whose generator and pool are the fake server's models.
fn pipeline(dir: &Path, fake: &Fake, pool: &[&str], cache: &Path) -> PathBuf {
    let endpoint = |model: &str| {
        format!(
            "type = \"openai\"\nbase_url = \"{}\"\nmodel = \"{model}\"\ntimeout_s = 0.5\nmax_retries = 3\nbackoff_ms = 5\nmax_backoff_ms = 40\nmax_concurrency = 8\n",
            fake.base_url
        )
    };
    let mut s = format!(
        "[cache]\npath = \"{cache}\"\n\n[backends.gen]\n{gen}\n[generate]\ndescriptions = \"{desc}\"\nsubjects = [\"high school biology\", \"marketing\"]\n\n[generate.generator]\ntype = \"llm\"\nbackend = \"gen\"\nquestions_per_call = 2\ncalls_per_subject = 3\nseed = 1\n\n[questions.test]\ntype = \"benchmark\"\nname = \"mmlu\"\nsubjects = [\"high school biology\", \"marketing\"]\nper_subject = 10\nholdout = 0.5\npart = \"main\"\nseed = 1\n\n[embedder]\n{emb}\n[routers.cascal]\ntype = \"cascal\"\n\n[routers.best_single]\ntype = \"best_single\"\n",
        cache = cache.display(),
        gen = endpoint("flaky"),
        desc = repo().join("descriptions/mmlu.toml").display(),
        emb = endpoint("embed"),
    );
    for m in pool {
        match m.strip_suffix("_completions") {
            // the plain /completions API
            Some(model) => s.push_str(&format!(
                "\n[pool.{m}]\n{}api = \"completions\"\n",
                endpoint(model)
            )),
            None => s.push_str(&format!("\n[pool.{m}]\n{}", endpoint(m))),
        }
    }
    let p = dir.join("openai.toml");
    std::fs::write(&p, s).unwrap();
    p
}

fn results(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn faults_are_retried_failures_reported_and_a_rerun_retries_only_what_failed() {
    let fake = Fake::start();
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("calls.sqlite");
    let p = pipeline(
        t.path(),
        &fake,
        &[
            "steady",
            "flaky",
            "nologprobs",
            "down",
            "other_completions",
            "shortctx",
        ],
        &cache,
    );
    let out = t.path().join("out");
    let o = rgd_run(t.path(), &p, &out);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    // every kind of fault happened and was retried through
    let faults = fake.faults();
    for kind in ["429", "500", "hang", "truncated", "invalid", "503"] {
        assert!(
            faults.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} fault: {faults:?}"
        );
    }
    let r = results(&out);
    // the flaky model answered everything after its retries; the down one nothing
    let failures = &r["call_failures"];
    assert!(failures["test"]["flaky"].is_null(), "{failures}");
    assert!(failures["train"]["flaky"].is_null(), "{failures}");
    let down = &failures["test"]["down"];
    assert_eq!(down[0], r["n_test"], "{failures}");
    assert!(
        down[1]
            .as_str()
            .unwrap()
            .contains("gave up after 4 attempts"),
        "{down}"
    );
    assert!(down[1].as_str().unwrap().contains("503"), "{down}");
    // a prompt over the server's context is an abstention too, not a stop
    let short = &failures["test"]["shortctx"];
    assert_eq!(short[0], r["n_test"], "{failures}");
    assert!(
        short[1].as_str().unwrap().contains("does not fit"),
        "{short}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Failed model calls"), "{report}");
    // a server without log-probabilities: the documented fallback, said once
    assert!(err.contains("returned no log-probabilities"), "{err}");
    assert_eq!(
        err.matches("returned no log-probabilities").count(),
        1,
        "{err}"
    );
    assert!(
        r["references"]["single"]["nologprobs"].as_f64().is_some(),
        "{r}"
    );
    // generation went through the flaky server too
    assert!(r["n_train"].as_u64().unwrap() >= 8, "{r}");
    let steady_before = fake.requests("steady");
    let flaky_before = fake.requests("flaky");
    let down_before = fake.requests("down");

    // rerun: everything that finished comes from the cache; only the failed calls are retried
    let o = rgd_run(t.path(), &p, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fake.requests("steady"),
        steady_before,
        "steady was called again"
    );
    assert_eq!(
        fake.requests("flaky"),
        flaky_before,
        "flaky was called again"
    );
    assert!(
        fake.requests("down") > down_before,
        "the failed calls were not retried"
    );

    // the server comes back: a rerun completes the missing answers, nothing else
    fake.set_down("down", false);
    let o = rgd_run(t.path(), &p, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = results(&out);
    // only the model whose context is too short still fails
    for split in ["train", "test"] {
        let f = r["call_failures"][split].as_object().unwrap();
        assert_eq!(
            f.keys().collect::<Vec<_>>(),
            ["shortctx"],
            "{}",
            r["call_failures"]
        );
    }
    assert!(r["references"]["single"]["down"].as_f64().is_some());
    assert_eq!(fake.requests("steady"), steady_before);
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn an_unknown_model_stops_the_run_with_the_servers_message() {
    let fake = Fake::start();
    let t = tempfile::tempdir().unwrap();
    let p = pipeline(
        t.path(),
        &fake,
        &["steady", "missing"],
        &t.path().join("c.sqlite"),
    );
    let out = t.path().join("out");
    let o = rgd_run(t.path(), &p, &out);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("pool model `missing`"), "{e}");
    assert!(
        e.contains("HTTP 404: The model `missing` does not exist"),
        "{e}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn a_key_variable_that_is_not_set_is_named_and_the_key_never_reaches_the_cache() {
    let fake = Fake::start();
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("calls.sqlite");
    let p = pipeline(t.path(), &fake, &["steady", "other"], &cache);
    let mut s = std::fs::read_to_string(&p).unwrap();
    s = s.replace(
        "[pool.steady]\n",
        "[pool.steady]\napi_key_env = \"RGD_TEST_FAKE_KEY\"\n",
    );
    std::fs::write(&p, &s).unwrap();
    let out = t.path().join("out");
    let o = rgd_run(t.path(), &p, &out);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("RGD_TEST_FAKE_KEY") && e.contains("api_key_env"),
        "{e}"
    );
    assert!(e.contains("[pool.steady]"), "{e}");
    let secret = "sk-test-secret-1234567890";
    let o = Command::new(env!("CARGO_BIN_EXE_rgd"))
        .current_dir(t.path())
        .env("RGD_TEST_FAKE_KEY", secret)
        .args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        cache.clone(),
        out.join("results.json"),
        out.join("report.md"),
    ] {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the key",
            f.display()
        );
    }
    for e in std::fs::read_dir(out.join("routers")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(!text.contains(secret));
    }
}

/// A running `rgd serve`; killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(artifact: &Path, backends: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rgd"));
    cmd.args([
        "serve",
        artifact.to_str().unwrap(),
        "--backends",
        backends.to_str().unwrap(),
    ])
    .args(["--listen", "127.0.0.1:0"])
    .args(extra)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_server(cmd)
}

/// Start a server command and wait for its `listening on` line.
fn spawn_server(mut cmd: Command) -> Server {
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("rgd serve printed {line:?}"))
        .to_string();
    Server { child, url }
}

pub fn post(s: &Server, body: &Value, token: Option<&str>) -> reqwest::blocking::Response {
    let c = reqwest::blocking::Client::new();
    let mut r = c.post(format!("{}/v1/chat/completions", s.url)).json(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().unwrap()
}

fn ask(model: &str, q: &str) -> Value {
    json!({"model": model, "temperature": 0, "max_tokens": 32,
           "messages": [{"role": "system", "content": "Answer with the letter."}, {"role": "user", "content": q}]})
}

/// The text of a streamed reply and the last `rgd` field.
pub fn sse(text: &str) -> (String, Value) {
    let mut streamed = String::new();
    let mut last_rgd = Value::Null;
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            break;
        }
        let c: Value = serde_json::from_str(line).unwrap();
        streamed.push_str(c["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        if !c["rgd"].is_null() {
            last_rgd = c["rgd"].clone();
        }
    }
    (streamed, last_rgd)
}

const Q: &str = "Which organelle makes most of a cell's ATP?\nA. Ribosome\nB. Mitochondrion\nC. Golgi body\nD. Nucleus";

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn serve_routes_top1_and_top3_to_the_models_the_router_chose_and_falls_back() {
    let (fake, _t, artifact, p) = trained_on_fake();
    let s = serve(
        &artifact,
        &p,
        &["--token-env", "RGD_TEST_SERVE_TOKEN"],
        &[("RGD_TEST_SERVE_TOKEN", "tok")],
    );
    let c = reqwest::blocking::Client::new();
    assert_eq!(
        c.get(format!("{}/health", s.url)).send().unwrap().status(),
        200
    );

    // top-1: the answer comes from the router's first choice
    let r = post(&s, &ask("rgd:cascal", Q), Some("tok"));
    assert_eq!(r.status(), 200);
    let header = r.headers()["x-rgd-route"].to_str().unwrap().to_string();
    let v: Value = r.json().unwrap();
    let first = v["rgd"]["ranking"][0]["model"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v["rgd"]["answered_by"], first, "{v}");
    assert!(
        header.starts_with(&format!("top1; models {first};")),
        "{header}"
    );
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.starts_with(&format!("[model {first}]")),
        "{content}"
    );
    assert_eq!(v["rgd"]["ranking"].as_array().unwrap().len(), 3);

    // top-3: the three ranked models answered; the reply is the vote's, from one of them
    let r = post(&s, &ask("rgd:cascal:top3", Q), Some("tok"));
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    let chosen: Vec<&str> = v["rgd"]["chosen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    let ranked: Vec<&str> = v["rgd"]["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["model"].as_str().unwrap())
        .collect();
    assert_eq!(chosen, ranked);
    let by = v["rgd"]["answered_by"].as_str().unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with(&format!("[model {by}]")), "{content}");
    for vote in v["rgd"]["votes"].as_array().unwrap() {
        let m = vote["model"].as_str().unwrap();
        let text = vote["text"].as_str().unwrap();
        assert!(text.starts_with(&format!("[model {m}]")), "{vote}");
        // the fake's letter for this conversation is what the vote read
        let conv = format!("Answer with the letter.\n{Q}");
        assert_eq!(vote["letter"], letter(m, &conv).to_string(), "{vote}");
    }
    let consensus = v["rgd"]["consensus"].as_str().unwrap();
    assert!(
        content.contains(&format!("({consensus})")),
        "{content} vs {consensus}"
    );
    let agreeing = v["rgd"]["votes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["letter"] == consensus)
        .count();
    assert!(v["rgd"]["votes"].as_array().unwrap().iter().all(|x| {
        x["letter"] == consensus
            || v["rgd"]["votes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|y| y["letter"] == x["letter"])
                .count()
                <= agreeing
    }));

    // a pool model by name
    let v: Value = post(&s, &ask("third", Q), Some("tok")).json().unwrap();
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("[model third]")
    );

    // streaming top-1
    let mut body = ask("rgd:cascal", Q);
    body["stream"] = json!(true);
    let text = post(&s, &body, Some("tok")).text().unwrap();
    let (streamed, last_rgd) = sse(&text);
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(
        streamed.starts_with(&format!("[model {first}]")),
        "{streamed}"
    );
    assert_eq!(last_rgd["answered_by"], first);

    // the first choice's server goes down: the next ranked model answers, and says so
    fake.set_down(&first, true);
    let v: Value = post(&s, &ask("rgd:cascal", Q), Some("tok")).json().unwrap();
    let second = v["rgd"]["ranking"][1]["model"].as_str().unwrap();
    assert_eq!(v["rgd"]["answered_by"], second, "{v}");
    assert_eq!(v["rgd"]["fallbacks"][0]["model"], first.as_str(), "{v}");
    assert!(
        v["rgd"]["fallbacks"][0]["error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{v}"
    );
    let mut body = ask("rgd:cascal", Q);
    body["stream"] = json!(true);
    let text = post(&s, &body, Some("tok")).text().unwrap();
    let (streamed, last_rgd) = sse(&text);
    assert!(streamed.starts_with(&format!("[model {second}]")), "{text}");
    assert_eq!(last_rgd["answered_by"], second, "{text}");
    assert_eq!(last_rgd["fallbacks"][0]["model"], first.as_str(), "{text}");
    fake.set_down(&first, false);

    // bad requests: OpenAI-style errors with the right status
    let err = |r: reqwest::blocking::Response, status: u16, code: &str| {
        assert_eq!(r.status().as_u16(), status);
        let v: Value = r.json().unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 5);
    };
    err(
        post(&s, &ask("rgd:cascal", Q), None),
        401,
        "missing_api_key",
    );
    err(
        post(&s, &ask("rgd:cascal", Q), Some("nope")),
        401,
        "invalid_api_key",
    );
    err(
        post(&s, &json!({"model": "rgd:cascal"}), Some("tok")),
        400,
        "invalid_request",
    );
    err(
        post(
            &s,
            &json!({"model": "rgd:cascal", "messages": []}),
            Some("tok"),
        ),
        400,
        "invalid_request",
    );
    err(
        post(&s, &ask("gpt-17", Q), Some("tok")),
        404,
        "model_not_found",
    );
    err(
        post(&s, &ask("rgd:knn", Q), Some("tok")),
        404,
        "model_not_found",
    );
    let mut top3_stream = ask("rgd:cascal:top3", Q);
    top3_stream["stream"] = json!(true);
    err(post(&s, &top3_stream, Some("tok")), 400, "invalid_request");
    let r = c
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth("tok")
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .unwrap();
    err(r, 400, "invalid_request");
    // over the limit: refused on the declared length, before the body is read, so the client
    // either reads the 413 or finds the connection closed while it is still sending
    let big = ask("rgd:cascal", &"x".repeat(2 * 1024 * 1024));
    match c
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth("tok")
        .json(&big)
        .send()
    {
        Ok(r) => err(r, 413, "request_too_large"),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    let mut bad_stream = ask("rgd:cascal", Q);
    bad_stream["stream"] = json!("yes");
    err(post(&s, &bad_stream, Some("tok")), 400, "invalid_request");
    // a declared body over the limit is refused at once, before any of it is sent
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(s.url.trim_start_matches("http://")).unwrap();
        raw.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\nContent-Length: 50000000000\r\n\r\n")
            .unwrap();
        raw.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut head = [0u8; 12];
        raw.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 413", "{}", String::from_utf8_lossy(&head));
    }
    // the model list is open, as documented (no token)
    let models: Value = c
        .get(format!("{}/v1/models", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["rgd:cascal", "rgd:cascal:top3", "steady", "other", "third"]
    );

    // every model down: 502 naming each failure
    for m in ["steady", "other", "third"] {
        fake.set_down(m, true);
    }
    err(
        post(&s, &ask("rgd:cascal", Q), Some("tok")),
        502,
        "all_backends_failed",
    );
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn serve_refuses_a_pool_without_the_routers_models() {
    let fake = Fake::start();
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("calls.sqlite");
    let p = pipeline(t.path(), &fake, &["steady", "other"], &cache);
    let out = t.path().join("out");
    let o = rgd(
        t.path(),
        &["train", p.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let q = pipeline(&t.path().join("x").tap_mkdir(), &fake, &["steady"], &cache);
    let o = rgd(
        t.path(),
        &[
            "serve",
            out.join("routers/cascal.json").to_str().unwrap(),
            "--backends",
            q.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("\"other\"") && e.contains("[pool]"), "{e}");
}

/// `--precision` is MiniLM's: on an artifact whose embedder is another (here the fake
/// server's), `rgd route` and `rgd serve` refuse it, naming the embedder file and its type.
#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn a_precision_is_refused_for_an_embedder_other_than_minilm() {
    let (_fake, t, art, p) = trained_on_fake();
    for args in [
        vec!["route", art.to_str().unwrap(), "q", "--precision", "int8"],
        vec![
            "serve",
            art.to_str().unwrap(),
            "--backends",
            p.to_str().unwrap(),
            "--precision",
            "int8",
        ],
    ] {
        let o = rgd(t.path(), &args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?}: {e}");
        assert!(
            e.contains("embedder.toml") && e.contains("`minilm`") && e.contains("`openai`"),
            "{args:?}: {e}"
        );
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> PathBuf;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// Train CASCAL on the fake server's models; (fake, tempdir, artifact, backends pipeline).
fn trained_on_fake() -> (Fake, tempfile::TempDir, PathBuf, PathBuf) {
    let fake = Fake::start();
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("calls.sqlite");
    let p = pipeline(t.path(), &fake, &["steady", "other", "third"], &cache);
    let out = t.path().join("out");
    let o = rgd(
        t.path(),
        &["train", p.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    (fake, t, out.join("routers/cascal.json"), p)
}

/// Is the peer's side of `s` closed (EOF or reset), reading past whatever it sent first?
fn closed(mut s: &std::net::TcpStream) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn serve_sheds_idle_and_half_sent_clients_and_keeps_answering() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let (_fake, _t, artifact, p) = trained_on_fake();
    let s = serve(
        &artifact,
        &p,
        &[
            "--idle-timeout-s",
            "3",
            "--header-timeout-s",
            "2",
            "--body-timeout-s",
            "2",
        ],
        &[],
    );
    let addr = s.url.trim_start_matches("http://").to_string();
    let idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let half: Vec<std::net::TcpStream> = (0..50)
        .map(|i| {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            // half of them stop inside the headers, half inside a declared body
            let part: &[u8] = if i % 2 == 0 {
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty"
            } else {
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\""
            };
            c.write_all(part).unwrap();
            c
        })
        .collect();
    let opened = Instant::now();
    // a normal client is answered promptly while the 350 are held open
    let c = reqwest::blocking::Client::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let r = post(&s, &ask("rgd:cascal", Q), None);
        assert_eq!(r.status(), 200);
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        let t0 = Instant::now();
        assert_eq!(
            c.get(format!("{}/health", s.url)).send().unwrap().status(),
            200
        );
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }
    // within the idle timeout (3 s) plus a margin, every idle and half-sent socket is closed
    while opened.elapsed() < Duration::from_millis(4500) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let still_idle = idle.iter().filter(|s| !closed(s)).count();
    let still_half = half.iter().filter(|s| !closed(s)).count();
    assert_eq!((still_idle, still_half), (0, 0), "sockets still open");
    // and the server still answers
    assert_eq!(post(&s, &ask("rgd:cascal", Q), None).status(), 200);
}

/// Under a low open-file limit (`ulimit -n 256`) the connection cap is lowered to what the
/// limit leaves (said on stderr), so 300 idle sockets meet the cap's prompt 503, not a kernel
/// that stops accepting (clients waiting 8-10 s in the backlog): a normal request is answered
/// at once, 200 or 503, and 200 once the idle sockets are shed.
#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn under_a_low_open_file_limit_idle_sockets_meet_the_cap_not_the_kernel() {
    use std::time::{Duration, Instant};
    let (_fake, t, artifact, p) = trained_on_fake();
    let note = t.path().join("stderr.txt");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\" 2>\"$RGD_TEST_STDERR\"")
        .arg(env!("CARGO_BIN_EXE_rgd"))
        .args(["serve", artifact.to_str().unwrap(), "--backends"])
        .arg(&p)
        // idle sockets are closed after 5 s: a kernel-refused accept would keep a client
        // waiting most of that, more than the 2 s allowed below
        .args(["--listen", "127.0.0.1:0", "--header-timeout-s", "5"])
        .env("RGD_TEST_STDERR", &note)
        .stdout(Stdio::piped());
    let s = spawn_server(cmd);
    let said = std::fs::read_to_string(&note).unwrap();
    assert!(
        said.contains("at most 192 connections at once, not 1024: the open-file limit is 256"),
        "{said}"
    );
    let addr = s.url.trim_start_matches("http://").to_string();
    let idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let c = reqwest::blocking::Client::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let status = c
            .get(format!("{}/health", s.url))
            .timeout(Duration::from_secs(20))
            .send()
            .unwrap()
            .status();
        assert!(status == 200 || status == 503, "{status}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }
    // past the header timeout (5 s) the idle sockets are closed, and requests are served
    std::thread::sleep(Duration::from_millis(5500));
    let t0 = Instant::now();
    assert_eq!(post(&s, &ask("rgd:cascal", Q), None).status(), 200);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    drop(idle);
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn serve_answers_503_beyond_its_connection_cap() {
    let (_fake, _t, artifact, p) = trained_on_fake();
    let s = serve(&artifact, &p, &["--max-connections", "8"], &[]);
    let addr = s.url.trim_start_matches("http://").to_string();
    let held: Vec<std::net::TcpStream> = (0..8)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/health", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "too_many_connections", "{v}");
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/health", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
