//! Bad input: clear errors naming the file, key or line — never a panic.

use crate::common::{edit_json, fixture_copy, layout_pipeline, rgd, stderr};
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
            .contains("has no answer key"),
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
    std::fs::write(t.path().join("one.toml"), zoo).unwrap();
    let o = crate::common::rgd(t.path(), &["run", "one.toml", "--out", "o", "-q"]);
    let e = crate::common::stderr(&o);
    assert!(!e.contains("panicked"), "{e}");
    assert!(o.status.success(), "{e}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("o/results.json")).unwrap())
            .unwrap();
    let ran = r["routers"].as_object().unwrap().len();
    let failed = r["failed"].as_object().unwrap();
    assert_eq!(ran + failed.len(), 10, "{r}");
    for (name, f) in failed {
        assert!(!f["error"].as_str().unwrap().is_empty(), "{name}");
    }
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
