//! Labelers, the fourth component kind: every router that takes labels learns from every
//! built-in labeler, on a simulated world and on a response-matrix fixture; the old type
//! names give the numbers they gave; label quality is reported; bad combinations are refused
//! before training, naming the router and the labeler.

use rgd_experiment::{Resolved, RunResults, Session};
use std::path::Path;

const ROUTERS: [&str; 6] = ["knn", "mlp", "mf", "ranker", "best_single", "cascal"];
const LABELERS: [&str; 4] = ["key", "consensus", "plurality", "dawid_skene"];

fn run(toml: &str, base: &Path) -> rgd_core::Result<RunResults> {
    let registry = rgd_components::registry()?;
    let r = Resolved::from_toml(&registry, toml, base, true).map_err(|e| {
        rgd_core::Error::Data(format!("{e:#}")) // the whole chain, for the assertions
    })?;
    rgd_experiment::run(&r, &Session::default(), None)
        .map_err(|e| rgd_core::Error::Data(format!("{e:#}")))
}

fn zoo() -> String {
    let mut t = String::new();
    for r in ROUTERS {
        for l in LABELERS {
            let extra = match r {
                "mlp" | "mf" | "ranker" => "epochs = 5\n",
                _ => "",
            };
            t.push_str(&format!(
                "[routers.{r}-{l}]\ntype = \"{r}\"\nlabels = \"{l}\"\n{extra}\n"
            ));
        }
    }
    t
}

fn check_zoo(res: &RunResults) {
    assert!(res.failed.is_empty(), "{:?}", res.failed);
    for r in ROUTERS {
        for l in LABELERS {
            let x = &res.routers[&format!("{r}-{l}")];
            assert_eq!(x.labels.as_deref(), Some(l));
            let want = if l == "key" {
                rgd_core::Supervision::QueryAnswer
            } else {
                rgd_core::Supervision::QueryOnly
            };
            assert_eq!(x.supervision, want, "{r}-{l}");
            assert!((0.0..=1.0).contains(&x.top1));
        }
    }
    // every labeler's agreement with the key, on both splits; the key agrees with itself
    for l in LABELERS {
        for split in ["train", "test"] {
            let q = res
                .label_quality
                .iter()
                .find(|q| q.labeler == l && q.split == split)
                .unwrap_or_else(|| panic!("no quality for {l} on {split}"));
            assert!(q.cells > 0 && (0.0..=1.0).contains(&q.agreement));
            if l == "key" {
                assert_eq!((q.agreement, q.brier), (1.0, 0.0));
            } else {
                assert!(q.agreement < 1.0 && q.brier > 0.0, "{l}: {q:?}");
            }
        }
    }
}

#[test]
fn every_router_learns_from_every_built_in_labeler_on_a_simulated_world() {
    let t = tempfile::tempdir().unwrap();
    let toml = format!(
        "seed = 1\n[data]\ntype = \"simulated\"\nsubjects = 3\nmodels = 4\ntrain_per_subject = 60\ntest_per_subject = 30\n\n{}",
        zoo()
    );
    check_zoo(&run(&toml, t.path()).unwrap());
}

#[test]
fn every_router_learns_from_every_built_in_labeler_on_a_response_matrix() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/wide");
    let toml = format!(
        "[data]\ntype = \"responses\"\nlayout = \"wide\"\ntrain = \"train.csv\"\ntest = \"test.csv\"\nchoice = \"{{model}}|choice\"\nconfidence = \"{{model}}|confidence\"\n\n{}",
        zoo()
    );
    check_zoo(&run(&toml, &base).unwrap());
}

#[test]
fn a_router_learns_exactly_the_labels_its_labeler_gives() {
    let registry = rgd_components::registry().unwrap();
    let src = registry
        .build_data_source(
            toml::from_str("type = \"simulated\"\nsubjects = 2\ntrain_per_subject = 40").unwrap(),
            "test",
        )
        .unwrap();
    let ctx = rgd_core::Context::new(".");
    let ds = src.load(&ctx).unwrap();
    for l in LABELERS {
        // kNN with k = 1 scores a training question with its own labels
        let knn = registry
            .build_router(
                toml::from_str(&format!("type = \"knn\"\nk = 1\nlabels = \"{l}\"")).unwrap(),
                "test",
            )
            .unwrap();
        let trained = knn.train(&ds.train, &ds.models, &ctx).unwrap();
        let scores = trained.score_split(&ds.train).unwrap();
        let labels = ctx.labels(l, &ds.train).unwrap().values;
        assert_eq!(scores, labels, "{l}");
        assert_eq!(knn.labels(), Some(l));
    }
    // different labelers give different labels on this world
    let key = ctx.labels("key", &ds.train).unwrap().values;
    for l in ["consensus", "plurality", "dawid_skene"] {
        assert_ne!(ctx.labels(l, &ds.train).unwrap().values, key, "{l}");
    }
}

#[test]
fn old_type_names_and_label_spellings_give_the_same_numbers() {
    let t = tempfile::tempdir().unwrap();
    let world = "seed = 2\n[data]\ntype = \"simulated\"\nsubjects = 3\ntrain_per_subject = 50\ntest_per_subject = 30\n\n";
    let toml = format!(
        "{world}[routers.consensus_knn]\ntype = \"consensus_knn\"\n\n[routers.knn_consensus]\ntype = \"knn\"\nlabels = \"consensus\"\n\n[routers.cascal_gt]\ntype = \"cascal_gt\"\n\n[routers.cascal_key]\ntype = \"cascal\"\nlabels = \"key\"\n\n[routers.cascal_correctness]\ntype = \"cascal\"\nlabels = \"correctness\"\n\n[routers.cascal]\ntype = \"cascal\"\n\n[routers.cascal_consensus]\ntype = \"cascal\"\nlabels = \"consensus\"\n\n[routers.best_correctness]\ntype = \"best_single\"\nlabels = \"correctness\"\n\n[routers.best]\ntype = \"best_single\"\n\n[labelers.mine]\ntype = \"consensus\"\n\n[routers.knn_mine]\ntype = \"knn\"\nlabels = \"mine\"\n"
    );
    let r = run(&toml, t.path()).unwrap();
    let top = |n: &str| {
        let x = &r.routers[n];
        (x.top1, x.top3_vote, x.supervision)
    };
    for (a, b) in [
        ("consensus_knn", "knn_consensus"),
        ("knn_mine", "knn_consensus"),
        ("cascal_gt", "cascal_key"),
        ("cascal_correctness", "cascal_key"),
        ("cascal", "cascal_consensus"),
        ("best_correctness", "best"),
    ] {
        assert_eq!(top(a), top(b), "{a} vs {b}");
    }
    assert_eq!(r.routers["cascal_gt"].labels.as_deref(), Some("key"));
    assert_eq!(r.routers["cascal"].labels.as_deref(), Some("consensus"));
    assert_ne!(top("cascal"), top("cascal_gt"));
}

#[test]
fn a_labeler_that_cannot_read_the_data_is_refused_before_training_naming_router_and_labeler() {
    // the wide fixture without its training key
    let t = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/wide");
    let train = std::fs::read_to_string(fixture.join("train.csv")).unwrap();
    let mut lines = train.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[4], "answer");
    let mut out = String::from(
        "id,subject,question,options,embedding,alpha|choice,alpha|confidence,beta|choice,beta|confidence,gamma|choice,gamma|confidence\n",
    );
    // rows are `id,subject,question,"[...]",A,"[...]",...`: drop the fifth CSV field
    for l in lines {
        let mut r = csv_fields(l);
        r.remove(4);
        out.push_str(&r.join(","));
        out.push('\n');
    }
    std::fs::write(t.path().join("train.csv"), out).unwrap();
    std::fs::copy(fixture.join("test.csv"), t.path().join("test.csv")).unwrap();
    let data = "[data]\ntype = \"responses\"\nlayout = \"wide\"\ntrain = \"train.csv\"\ntest = \"test.csv\"\nchoice = \"{model}|choice\"\nconfidence = \"{model}|confidence\"\n\n";
    // query-only routers train on the unlabeled questions (none is lost)
    let ok = run(
        &format!(
            "{data}[routers.cascal]\ntype = \"cascal\"\n\n[routers.knn]\ntype = \"knn\"\nlabels = \"dawid_skene\"\n"
        ),
        t.path(),
    )
    .unwrap();
    assert!(ok.failed.is_empty(), "{:?}", ok.failed);
    assert_eq!(ok.n_train, 20);
    // a key-reading labeler is refused before training, naming router and labeler; the others
    // run
    let r = run(
        &format!("{data}[routers.cascal]\ntype = \"cascal\"\n\n[routers.knn]\ntype = \"knn\"\n"),
        t.path(),
    )
    .unwrap();
    let e = &r.failed["knn"].error;
    assert!(
        e.contains("[routers.knn]") && e.contains("labeler `key`") && e.contains("answer key"),
        "{e}"
    );
    assert!(r.routers.contains_key("cascal"));
    // a name that is neither a [labelers.NAME] nor a type names the router's table
    let e = run(
        &format!("{data}[routers.knn]\ntype = \"knn\"\nlabels = \"nope\"\n"),
        t.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("[routers.knn]") && e.contains("`labels = \"nope\"`") && e.contains("plurality"),
        "{e}"
    );
    // a labeler's bad parameter names its table
    let e = run(
        &format!(
            "{data}[labelers.sharp]\ntype = \"consensus\"\ntau = -1\n\n[routers.knn]\ntype = \"knn\"\nlabels = \"sharp\"\n"
        ),
        t.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[labelers.sharp]") && e.contains("tau"), "{e}");
}

#[test]
fn a_letter_reading_labeler_on_correctness_only_data_is_refused_naming_router_and_labeler() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/embedllm");
    let pipeline = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pipelines/embedllm.toml"),
    )
    .unwrap();
    let data: String = pipeline
        .split("[routers.")
        .next()
        .unwrap()
        .replace("../../tests/fixtures/formats/embedllm/", "");
    let ok = run(&format!("{data}\n[routers.knn]\ntype = \"knn\"\n"), &base).unwrap();
    assert!(ok.failed.is_empty(), "{:?}", ok.failed);
    let r = run(
        &format!("{data}\n[routers.knn_p]\ntype = \"knn\"\nlabels = \"plurality\"\n\n[routers.knn]\ntype = \"knn\"\n"),
        &base,
    )
    .unwrap();
    let e = &r.failed["knn_p"].error;
    assert!(
        e.contains("[routers.knn_p]") && e.contains("labeler `plurality`") && e.contains("letters"),
        "{e}"
    );
    assert!(r.routers.contains_key("knn"));
}

/// The fields of one CSV line (quotes kept: they are written back as read).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}
