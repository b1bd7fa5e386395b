//! Bad input: clear errors naming the file, key or line — never a panic.

use crate::common::{copy_tree, edit_json, fixture_copy, layout_pipeline, rgd, stderr};
use std::path::Path;

fn run_err(dir: &Path, pipeline: &Path) -> String {
    let out = dir.join("out");
    let o = rgd(
        dir,
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(!o.status.success(), "expected a failure");
    let e = stderr(&o);
    assert!(!e.contains("panicked"), "panic: {e}");
    e
}

#[test]
fn unknown_type_lists_the_known_ones() {
    let (t, _) = fixture_copy();
    let p = layout_pipeline(t.path(), "layout", "[routers.x]\ntype = \"casscal\"\n");
    let e = run_err(t.path(), &p);
    assert!(e.contains("unknown router type `casscal`"), "{e}");
    assert!(
        e.contains("cascal, cascal_gt") && e.contains("[routers.x]"),
        "{e}"
    );
    assert!(
        e.contains("pipeline.toml:8 [routers.x]"),
        "names the line: {e}"
    );
}

#[test]
fn unknown_and_missing_fields_name_the_key_and_table() {
    let (t, _) = fixture_copy();
    let p = layout_pipeline(
        t.path(),
        "layout",
        "[routers.c2]\ntype = \"cascal\"\nk_nearst = 2\n",
    );
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("unknown field `k_nearst`") && e.contains("[routers.c2]"),
        "{e}"
    );
    std::fs::write(
        &p,
        "[data]\ntype = \"reference_layout\"\npath = \"layout\"\n",
    )
    .unwrap();
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("missing field `task`") && e.contains("[data]"),
        "{e}"
    );
    std::fs::write(
        &p,
        "[data]\ntype = \"simulated\"\n[routers.a]\ntype = \"cascal\"\nk_nearest = \"three\"\n",
    )
    .unwrap();
    let e = run_err(t.path(), &p);
    assert!(e.contains("k_nearest") || e.contains("invalid type"), "{e}");
    std::fs::write(
        &p,
        "[data]\ntype = \"simulated\"\n[rooters.a]\ntype = \"cascal\"\n",
    )
    .unwrap();
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("unknown field `rooters`") && e.contains("pipeline.toml"),
        "{e}"
    );
    std::fs::write(&p, "[data\ntype = 1").unwrap();
    let e = run_err(t.path(), &p);
    assert!(e.contains("line 1"), "{e}");
}

#[test]
fn malformed_json_names_file_and_line() {
    let (t, root) = fixture_copy();
    let f = root.join("Model_Responses/SYN-train/M2.json");
    let text = std::fs::read_to_string(&f).unwrap();
    let broken = text.replacen("\"avg_logprob\"", "\"avg_logprob\" -", 1);
    std::fs::write(&f, broken).unwrap();
    let p = layout_pipeline(t.path(), "layout", "");
    let e = run_err(t.path(), &p);
    assert!(e.contains("SYN-train/M2.json:14:23"), "{e}");
}

#[test]
fn response_for_an_unknown_question_is_named() {
    let (t, root) = fixture_copy();
    edit_json(&root.join("Model_Responses/SYN-test/M1.json"), |v| {
        v[3]["question_id"] = 987654.into();
    });
    let p = layout_pipeline(t.path(), "layout", "");
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("SYN-test/M1.json") && e.contains("unknown question `987654`"),
        "{e}"
    );
}

#[test]
fn nan_and_wrong_length_embeddings_are_named() {
    let (t, root) = fixture_copy();
    let f = root.join("embeddings/SYN-train.json");
    edit_json(&f, |v| {
        let row = v["5"].as_array_mut().unwrap();
        row.pop();
    });
    let p = layout_pipeline(t.path(), "layout", "");
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("embedding of question `5` has 95 values, expected 96"),
        "{e}"
    );
    // Python's json.dump writes NaN as a bare token
    edit_json(&f, |v| {
        v["5"].as_array_mut().unwrap().push(0.5.into());
        v["7"][3] = 12345.0.into();
    });
    let text = std::fs::read_to_string(&f)
        .unwrap()
        .replacen("12345.0", "NaN", 1);
    std::fs::write(&f, text).unwrap();
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("SYN-train.json:") && e.contains("non-finite number (NaN"),
        "{e}"
    );
}

#[test]
fn subjects_with_one_question_or_none_and_a_silent_model_are_handled() {
    let (t, root) = fixture_copy();
    // subject_7 keeps a single training question; the others lose theirs
    let keep = |v: &serde_json::Value| v["category"] != "subject_7" || v["question_id"] == 560;
    for f in ["Data/SYN/train.json"]
        .into_iter()
        .map(String::from)
        .chain((0..6).map(|m| format!("Model_Responses/SYN-train/M{m}.json")))
    {
        edit_json(&root.join(f), |v| v.as_array_mut().unwrap().retain(keep));
    }
    // subject_6 is only in the test split (0 training questions)
    for f in ["Data/SYN/train.json"]
        .into_iter()
        .map(String::from)
        .chain((0..6).map(|m| format!("Model_Responses/SYN-train/M{m}.json")))
    {
        edit_json(&root.join(f), |v| {
            v.as_array_mut()
                .unwrap()
                .retain(|q| q["category"] != "subject_6")
        });
    }
    // M5 never gives a parseable answer
    for split in ["train", "test"] {
        edit_json(
            &root.join(format!("Model_Responses/SYN-{split}/M5.json")),
            |v| {
                for q in v.as_array_mut().unwrap() {
                    q["selected_choice"] = "N/A".into();
                }
            },
        );
    }
    let data = std::fs::read_to_string(root.join("Data/SYN/train.json")).unwrap();
    assert!(data.contains("\"question_id\": 560"));
    let p = layout_pipeline(t.path(), "layout", "");
    let out = t.path().join("out");
    let o = rgd(
        t.path(),
        &["run", p.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("model `M5` never gave a parseable answer"),
        "{}",
        stderr(&o)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        r["routers"]["cascal"]["top1_share"]["M5"], 0.0,
        "a silent model is never picked"
    );
    assert_eq!(r["references"]["single"]["M5"], 0.0);
    assert!(
        r["routers"]["cascal"]["per_subject"]["subject_6"]["n"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn a_router_that_cannot_train_is_reported_and_the_others_still_run() {
    let (t, root) = fixture_copy();
    // no answer key on the training data: query-answer routers cannot train, CASCAL can
    edit_json(&root.join("Data/SYN/train.json"), |v| {
        for q in v.as_array_mut().unwrap() {
            q["answer"] = serde_json::Value::Null;
        }
    });
    let p = layout_pipeline(t.path(), "layout", "[routers.gt]\ntype = \"cascal_gt\"\n");
    let out = t.path().join("out");
    let o = rgd(
        t.path(),
        &[
            "run",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(
        r["failed"]["gt"]["error"]
            .as_str()
            .unwrap()
            .contains("learns from labeler `key`, and it reads the answer key"),
        "{r}"
    );
    assert!(r["routers"]["cascal"]["top1"].as_f64().unwrap() > 0.5);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| gt | cascal_gt | – | failed |"),
        "{report}"
    );
}

#[test]
fn every_router_trains_on_one_question_or_says_why() {
    let t = tempfile::tempdir().unwrap();
    let zoo = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/pipelines/zoo.toml"),
    )
    .unwrap()
    .replace("subjects = 8", "subjects = 1")
    .replace("train_per_subject = 200", "train_per_subject = 1");
    std::fs::write(t.path().join("one.toml"), &zoo).unwrap();
    let o = crate::common::rgd(t.path(), &["run", "one.toml", "--out", "o", "-q"]);
    let e = crate::common::stderr(&o);
    assert!(!e.contains("panicked"), "{e}");
    assert!(o.status.success(), "{e}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("o/results.json")).unwrap())
            .unwrap();
    // every router that can learn from one question runs; the ranker, which learns which
    // model is right, says that no model is right on it (this seeded world's one question)
    let ran: Vec<&str> = r["routers"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let zoo_routers: Vec<String> = toml::from_str::<toml::Table>(&zoo).unwrap()["routers"]
        .as_table()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut seen: Vec<&str> = ran.clone();
    seen.extend(r["failed"].as_object().unwrap().keys().map(String::as_str));
    seen.sort();
    let mut want: Vec<&str> = zoo_routers.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(
        seen, want,
        "every router of the zoo ran or failed with a reason: {r}"
    );
    let failed = r["failed"].as_object().unwrap();
    assert_eq!(failed.len(), 1, "{r}");
    assert_eq!(
        failed["ranker"]["error"],
        "neural router: cannot train: no training question is answered right by any model",
        "{r}"
    );
}

#[test]
fn bad_ablation_plugin_and_recording_keys_are_named() {
    let t = tempfile::tempdir().unwrap();
    let world = "[data]\ntype = \"simulated\"\nsubjects = 2\n\n[filters.valid]\ntype = \"validity\"\n\n[routers.cascal]\ntype = \"cascal\"\n";
    // ablating a filter the pipeline does not have
    let p = t.path().join("a.toml");
    std::fs::write(&p, format!("ablate_filters = [\"self_answr\"]\n{world}")).unwrap();
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("a.toml ablate_filters")
            && e.contains("`self_answr` is not a [filters.NAME]")
            && e.contains("its filters: valid"),
        "{e}"
    );
    // a source naming a filter the pipeline does not have
    let p = t.path().join("s.toml");
    std::fs::write(
        &p,
        format!(
            "{world}\n[sources.other]\ntype = \"simulated\"\nsubjects = 2\nfilters = [\"nope\"]\n"
        ),
    )
    .unwrap();
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("[sources.other]") && e.contains("`filters` names `nope`"),
        "{e}"
    );
    // an embedder precision that does not exist
    let p = t.path().join("e.toml");
    std::fs::write(
        &p,
        format!("{world}\n[embedder]\ntype = \"minilm\"\nprecision = \"int4\"\n"),
    )
    .unwrap();
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("embedder")
            && e.contains("precision")
            && e.contains("int4")
            && e.contains("int8"),
        "{e}"
    );
    // a plugin library that does not exist
    let p = t.path().join("b.toml");
    std::fs::write(&p, format!("plugins = [\"nowhere/librouter.so\"]\n{world}")).unwrap();
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("b.toml: plugins") && e.contains("librouter.so: cannot load the library"),
        "{e}"
    );
    // a recording that does not exist
    let p = t.path().join("c.toml");
    std::fs::write(
        &p,
        "[cache]\nrecording = \"rec/none.jsonl.gz\"\n\n[questions.train]\ntype = \"benchmark\"\nname = \"sciq\"\n\n[questions.test]\ntype = \"benchmark\"\nname = \"sciq\"\n\n[pool.m]\ntype = \"llamacpp\"\nmodel = \"smollm2-135m\"\n\n[embedder]\ntype = \"minilm\"\n\n[routers.cascal]\ntype = \"cascal\"\n",
    )
    .unwrap();
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("none.jsonl.gz does not exist") && e.contains("--live"),
        "{e}"
    );
    // descriptions given as something other than paths
    let p = t.path().join("d.toml");
    std::fs::write(
        &p,
        "[generate]\ndescriptions = [\"x.toml\", 3]\n\n[generate.generator]\ntype = \"llm\"\nbackend = \"b\"\n\n[questions.test]\ntype = \"benchmark\"\nname = \"sciq\"\n\n[pool.m]\ntype = \"llamacpp\"\nmodel = \"smollm2-135m\"\n\n[embedder]\ntype = \"minilm\"\n\n[routers.cascal]\ntype = \"cascal\"\n",
    )
    .unwrap();
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("[generate]")
            && e.contains("a path or a list of paths, found integer in the list"),
        "{e}"
    );
}

#[test]
fn a_table_name_that_is_a_path_is_refused_before_anything_is_written() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let victim = t.path().join("victim.json");
    std::fs::write(&victim, "keep me").unwrap();
    let world = "[data]\ntype = \"simulated\"\nsubjects = 2\n\n";
    for (table, name) in [
        ("routers", "\"../victim\""),
        ("routers", "\"/tmp/abs\""),
        ("routers", "\"a/b\""),
        ("routers", "\"..\""),
        ("routers", "\"\""),
        ("routers", "\"x y\""),
        ("pool", "\"../p\""),
        ("filters", "\".hidden\""),
        ("sources", "\"s\\\\t\""),
    ] {
        let body = match table {
            "routers" => "type = \"cascal\"",
            "filters" => "type = \"validity\"",
            _ => "type = \"simulated\"",
        };
        let p = work.join("p.toml");
        std::fs::write(
            &p,
            format!("{world}[routers.ok]\ntype = \"cascal\"\n\n[{table}.{name}]\n{body}\n"),
        )
        .unwrap();
        for cmd in ["run", "train"] {
            let o = rgd(&work, &[cmd, "p.toml", "--out", "out", "-q"]);
            let e = stderr(&o);
            assert!(!o.status.success(), "{table}.{name} {cmd}: {e}");
            assert!(!e.contains("panicked"), "{e}");
            assert!(
                e.contains("p.toml:")
                    && e.contains(&format!("[{table}."))
                    && e.contains("is not allowed"),
                "{table}.{name} {cmd}: {e}"
            );
        }
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!work.join("out").exists());
    assert!(!Path::new("/tmp/abs.json").exists());
}

#[test]
fn the_bad_input_corpus_fails_with_the_expected_errors() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bad-input/pipelines");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "{}", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let o = rgd(
            t.path(),
            &[
                "run",
                f.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "-q",
            ],
        );
        let e = stderr(&o);
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let expects: Vec<String> = std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: ").map(str::to_string))
            .collect();
        assert!(!expects.is_empty(), "{name} has no `# expect:` line");
        if o.status.code() != Some(1) {
            failures.push(format!("{name}: exit {:?}: {e}", o.status.code()));
        } else if e.contains("panicked") {
            failures.push(format!("{name}: panicked: {e}"));
        } else if out.join("results.json").exists() {
            failures.push(format!("{name}: wrote results"));
        } else if let Some(x) = expects.iter().find(|x| !e.contains(x.as_str())) {
            failures.push(format!("{name}: stderr lacks `{x}`: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(!Path::new("/tmp/rgd-abs.json").exists());
}

/// Train every router on a small simulated world and return (dir, embedding of a query).
fn trained_artifacts() -> (tempfile::TempDir, String) {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("p.toml"),
        "[data]\ntype = \"simulated\"\nsubjects = 3\ntrain_per_subject = 40\ntest_per_subject = 10\ndim = 8\n\n[routers.cascal]\ntype = \"cascal\"\n\n[routers.knn]\ntype = \"knn\"\n\n[routers.best_single]\ntype = \"best_single\"\n\n[routers.mlp]\ntype = \"mlp\"\nepochs = 2\n\n[routers.dawid_skene]\ntype = \"dawid_skene\"\n",
    )
    .unwrap();
    let o = rgd(t.path(), &["train", "p.toml", "--out", "out", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = serde_json::to_string(&vec![0.25f32; 8]).unwrap();
    (t, e)
}

#[test]
fn edited_or_foreign_artifacts_are_refused_naming_the_file_and_field() {
    let (t, emb) = trained_artifacts();
    let routers = t.path().join("out/routers");
    let route = |file: &str| {
        rgd(
            t.path(),
            &[
                "route",
                routers.join(file).to_str().unwrap(),
                "q",
                "--embedding",
                &emb,
            ],
        )
    };
    // every untouched artifact routes
    for f in [
        "cascal.json",
        "knn.json",
        "best_single.json",
        "mlp.json",
        "dawid_skene.json",
    ] {
        let o = route(f);
        assert!(o.status.success(), "{f}: {}", stderr(&o));
        // a value beyond f32 reads as infinity: refused, naming the value
        {
            let huge = format!("[1e39{}]", ", 0.25".repeat(7));
            let o = rgd(
                t.path(),
                &[
                    "route",
                    routers.join(f).to_str().unwrap(),
                    "q",
                    "--embedding",
                    &huge,
                ],
            );
            assert!(
                !o.status.success() && stderr(&o).contains("embedding value 0 is inf"),
                "{f}: {}",
                stderr(&o)
            );
        }
    }
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            // a size that would abort the first routed request is refused up front
            "cascal.json",
            Box::new(|v| v["params"]["k_nearest"] = 1_000_000_000u64.into()),
            "params.k_nearest",
        ),
        (
            "cascal.json",
            Box::new(|v| v["models"].as_array_mut().unwrap().push("extra".into())),
            "artifact field `global`: 6 values, expected 7",
        ),
        (
            "cascal.json",
            Box::new(|v| {
                v["subjects"][0]["clusters"][0]["centroid"]
                    .as_array_mut()
                    .unwrap()
                    .pop();
            }),
            "subjects[0].clusters[0].centroid`: 7 values, expected 8",
        ),
        (
            // the one edited vector is named, not the centroids measured against it
            "cascal.json",
            Box::new(|v| {
                v["subjects"][0]["representative"]
                    .as_array_mut()
                    .unwrap()
                    .pop();
            }),
            "subjects[0].representative`: 7 values, expected 8",
        ),
        (
            "cascal.json",
            Box::new(|v| v["models"][1] = v["models"][0].clone()),
            "artifact field `models`: `M0` appears twice",
        ),
        (
            // a label beyond what any labeler gives
            "knn.json",
            Box::new(|v| v["labels"]["data"][0] = 5.0.into()),
            "artifact field `labels`",
        ),
        (
            "knn.json",
            Box::new(|v| {
                v["ids"].as_array_mut().unwrap().truncate(3);
            }),
            "artifact field `ids`: 3 values, expected 120",
        ),
        (
            "best_single.json",
            Box::new(|v| {
                v["scores"].as_array_mut().unwrap().pop();
            }),
            "artifact field `scores`: 5 values, expected 6",
        ),
        (
            "mlp.json",
            Box::new(|v| v["b2"] = serde_json::json!({"v": 1, "dim": [7], "data": vec![0.0; 7]})),
            "artifact field `b2`: 7 values, expected 6",
        ),
        (
            "dawid_skene.json",
            Box::new(|v| v["subjects"][0]["accuracy"][0] = serde_json::json!(1.5)),
            "artifact field `subjects[0].accuracy`: 1.5 is outside 0..=1",
        ),
    ];
    for (file, edit, want) in cases {
        let path = routers.join(file);
        let original = std::fs::read_to_string(&path).unwrap();
        edit_json(&path, |v| edit(v));
        let o = route(file);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{file} {want}: {e}");
        assert!(!e.contains("panicked"), "{e}");
        assert!(
            e.contains(file) && e.contains(want),
            "{file}: want `{want}` in: {e}"
        );
        std::fs::write(&path, original).unwrap();
    }
    // a device is not an artifact: refused at once, never read
    let o = rgd(
        t.path(),
        &["route", "/dev/urandom", "q", "--embedding", &emb],
    );
    let e = stderr(&o);
    assert!(
        o.status.code() == Some(1) && e.contains("/dev/urandom: not a regular file"),
        "{e}"
    );
}

#[test]
fn data_that_cannot_be_scored_is_refused_and_suspicious_data_is_warned_about() {
    let (t, root) = fixture_copy();
    let p = layout_pipeline(t.path(), "layout", "");
    let test = root.join("Data/SYN/test.json");
    let original = std::fs::read_to_string(&test).unwrap();
    // an answer letter beyond the question's four options
    edit_json(&test, |v| {
        for q in v.as_array_mut().unwrap() {
            q["answer"] = "E".into();
        }
    });
    let e = run_err(t.path(), &p);
    assert!(e.contains("answer `E` but only 4 options"), "{e}");
    // no gold answer at all: nothing can be scored
    edit_json(&test, |v| {
        for q in v.as_array_mut().unwrap() {
            q["answer"] = serde_json::Value::Null;
        }
    });
    let e = run_err(t.path(), &p);
    assert!(e.contains("no test question has a gold answer"), "{e}");
    std::fs::write(&test, &original).unwrap();
    // a model that chose a letter beyond the options
    let m0 = root.join("Model_Responses/SYN-train/M0.json");
    edit_json(&m0, |v| v[0]["selected_choice"] = "F".into());
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("model 0 chose `F` but there are only 4 options"),
        "{e}"
    );
    // zero-dimensional embeddings
    copy_tree(&crate::common::fixture_dir(), &root);
    for split in ["train", "test"] {
        edit_json(&root.join(format!("embeddings/SYN-{split}.json")), |v| {
            for (_, e) in v.as_object_mut().unwrap() {
                *e = serde_json::json!([]);
            }
        });
    }
    let e = run_err(t.path(), &p);
    assert!(
        e.contains("0 values per question") || e.contains("no dimension"),
        "{e}"
    );
    // legal but suspicious: a model that never answers the test split is warned about
    copy_tree(&crate::common::fixture_dir(), &root);
    let m5 = root.join("Model_Responses/SYN-test/M5.json");
    edit_json(&m5, |v| {
        for r in v.as_array_mut().unwrap() {
            r["selected_choice"] = "N/A".into();
        }
    });
    let o = rgd(t.path(), &["run", p.to_str().unwrap(), "--out", "o", "-q"]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("warning: model `M5` answered none of the 800 questions of split `test`"),
        "{e}"
    );
}

#[test]
fn serve_limits_out_of_range_are_refused_before_anything_starts() {
    let t = tempfile::tempdir().unwrap();
    for (flag, value, want) in [
        ("--max-body-kib", "99999999999999", "is not in 1..=1048576"),
        ("--max-connections", "0", "is not in 1..=100000"),
        (
            "--idle-timeout-s",
            "inf",
            "is not a number of seconds from 0.001 to 86400",
        ),
        (
            "--header-timeout-s",
            "nan",
            "is not a number of seconds from 0.001 to 86400",
        ),
    ] {
        let o = rgd(t.path(), &["serve", "x.json", flag, value]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {e}");
        assert!(
            e.contains(want) && !e.contains("panicked"),
            "{flag} {value}: {e}"
        );
    }
}

/// A replayed recording is the one that was written: a record whose response was edited (the
/// log-probabilities rotated, key and request untouched) is refused by its `response_sha256`,
/// and a recording file changed in any way is refused by its manifest's sha256.
#[test]
fn an_edited_recording_is_refused_by_its_digests() {
    use std::io::{BufRead, Write};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = tempfile::tempdir().unwrap();
    let rec = t.path().join("bigbench.jsonl.gz");
    let manifest = t.path().join("bigbench.manifest.json");
    let committed = root.join("examples/bigbench/recordings");
    std::fs::copy(committed.join("bigbench.jsonl.gz"), &rec).unwrap();
    std::fs::copy(committed.join("bigbench.manifest.json"), &manifest).unwrap();
    // as committed it replays
    let c = rgd_experiment::recording::replay(&rec).unwrap();
    assert_eq!(c.len().unwrap(), 1912);

    // one more byte at the end: the manifest's sha256 no longer matches
    let mut bytes = std::fs::read(&rec).unwrap();
    bytes.push(0);
    std::fs::write(&rec, &bytes).unwrap();
    let e = rgd_experiment::recording::replay(&rec)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bigbench.jsonl.gz: its sha256 is") && e.contains("bigbench.manifest.json says"),
        "{e}"
    );

    // a response's numbers rotated (no manifest: the record's own digest catches it)
    std::fs::remove_file(&manifest).unwrap();
    let lines: Vec<String> = std::io::BufReader::new(flate2::read::GzDecoder::new(
        std::fs::File::open(committed.join("bigbench.jsonl.gz")).unwrap(),
    ))
    .lines()
    .map(Result::unwrap)
    .collect();
    // the first record with log-probabilities: rotate them in its text, leaving every other
    // byte (the key is over the request's exact text) as it was
    let mut lines = lines;
    let mut edited = 0;
    for (i, line) in lines.iter_mut().enumerate() {
        let Some(start) = line
            .find("\"logprobs\":[")
            .map(|s| s + "\"logprobs\":[".len())
        else {
            continue;
        };
        let end = start + line[start..].find(']').unwrap();
        let mut values: Vec<&str> = line[start..end].split(',').collect();
        if values.len() < 2 || values.iter().all(|v| *v == values[0]) {
            continue;
        }
        values.rotate_left(1);
        *line = format!("{}{}{}", &line[..start], values.join(","), &line[end..]);
        edited = i + 1;
        break;
    }
    assert!(edited > 0, "no record with two different log-probabilities");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&rec).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
    gz.finish().unwrap();
    let e = rgd_experiment::recording::replay(&rec)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            ":{edited}: the response does not match its `response_sha256`"
        )),
        "{e}"
    );
}

/// Splits that share no subject stop the run, naming both sides and the two ways on
/// (`subject = ...`, `disjoint_subjects = true`); some unseen test subjects are a warning.
#[test]
fn train_and_test_splits_without_a_common_subject_are_an_error_unless_meant() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wide = root.join("tests/fixtures/formats/wide");
    let t = tempfile::tempdir().unwrap();
    std::fs::copy(wide.join("train.csv"), t.path().join("train.csv")).unwrap();
    let test = std::fs::read_to_string(wide.join("test.csv")).unwrap();
    let subjects: Vec<String> = test
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    let first = subjects[0].clone();
    // every test subject renamed: nothing in common
    let renamed: String = test
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_string()
            } else {
                let mut cells: Vec<&str> = l.splitn(3, ',').collect();
                let s = format!("new-{}", cells[1]);
                cells[1] = &s;
                cells.join(",")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(t.path().join("test.csv"), renamed + "\n").unwrap();
    let data = "[data]\ntype = \"responses\"\nlayout = \"wide\"\ntrain = \"train.csv\"\ntest = \"test.csv\"\nchoice = \"{model}|choice\"\nconfidence = \"{model}|confidence\"\n[routers.cascal]\ntype = \"cascal\"\n";
    std::fs::write(t.path().join("p.toml"), data).unwrap();
    let p = t.path().join("p.toml");
    let o = rgd(t.path(), &["run", p.to_str().unwrap(), "--out", "o", "-q"]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("share no subject")
            && e.contains(&format!("`{first}`"))
            && e.contains(&format!("`new-{first}`"))
            && e.contains("disjoint_subjects = true"),
        "{e}"
    );
    // meant: it runs
    std::fs::write(&p, format!("disjoint_subjects = true\n{data}")).unwrap();
    let o = rgd(t.path(), &["run", p.to_str().unwrap(), "--out", "o", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // one test subject unseen: a warning naming it
    let one: String = test
        .lines()
        .map(|l| l.replacen(&format!(",{first},"), ",unseen,", 1))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(t.path().join("test.csv"), one + "\n").unwrap();
    std::fs::write(&p, data).unwrap();
    let o = rgd(t.path(), &["run", p.to_str().unwrap(), "--out", "o"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("have no training question (`unseen`)"),
        "{}",
        stderr(&o)
    );
}

/// Under a memory limit (`ulimit -v`, as a campaign's 6 GB cap or a container's), a world that
/// the size ceilings allow but the limit does not is refused up front, naming its sizes and
/// the estimate, instead of aborting on the allocation.
#[test]
fn an_allocation_beyond_the_memory_limit_is_refused_with_its_estimate() {
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 3000000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_rgd"))
        .args([
            "bench",
            "cascal",
            "--subjects",
            "10",
            "--train-per-subject",
            "100000",
            "--test-per-subject",
            "100000",
            "--dim",
            "120",
            "--repeats",
            "1",
            "-q",
        ])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("a world of 10 subjects x 200000 questions (train + test) x 120 dimensions")
            && e.contains("needs about 3.4 GB of memory, and only")
            && !e.contains("memory allocation"),
        "{e}"
    );
}
