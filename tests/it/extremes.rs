//! Every router type, every numeric field, extreme values: the registry's check refuses what
//! cannot work, and whatever it accepts trains and scores a tiny split without a panic or an
//! abort (a failed allocation would end this test binary).

use rgd_core::{Context, Kind};
use std::sync::mpsc;
use std::time::Duration;

const INTEGERS: [i64; 4] = [0, 1, 4_294_967_295, i64::MAX];
const NUMBERS: [f64; 6] = [0.0, -1.0, 1e308, -1e308, f64::INFINITY, f64::NAN];

/// A simulated world of the given `[data]` settings.
fn simulated(registry: &rgd_core::Registry, world: &str) -> rgd_core::Dataset {
    let spec = toml::from_str(&format!("type = \"simulated\"\n{world}")).unwrap();
    registry
        .build_data_source(spec, "world")
        .unwrap()
        .load(&Context::new("."))
        .unwrap()
}

/// The tables that set one numeric field of a type to each extreme value, with what each is.
fn probes(
    entry: &rgd_core::Entry,
    field: &rgd_core::registry::FieldDoc,
) -> Vec<(toml::Table, String)> {
    let values: Vec<toml::Value> = match field.ty.as_str() {
        "integer" => INTEGERS.iter().map(|&x| toml::Value::Integer(x)).collect(),
        "number" => NUMBERS.iter().map(|&x| toml::Value::Float(x)).collect(),
        _ => Vec::new(),
    };
    values
        .into_iter()
        .map(|v| {
            let mut t = toml::Table::new();
            t.insert("type".into(), entry.type_name.clone().into());
            t.insert(field.name.clone(), v.clone());
            (t, format!("{} {} = {v}", entry.type_name, field.name))
        })
        .collect()
}

#[test]
fn extreme_values_of_every_routers_numeric_fields_are_refused_or_handled() {
    let registry = rgd_components::registry().unwrap();
    let ds = simulated(
        &registry,
        "subjects = 2\ntrain_per_subject = 20\ntest_per_subject = 10\nseed = 21",
    );
    let mut tried = 0;
    let mut slow = Vec::new();
    for entry in registry.entries(Kind::Router) {
        // routers served by other processes or plugins have no fields of their own to probe
        if entry.type_name == "process" {
            continue;
        }
        for field in &entry.fields {
            for (t, what) in probes(entry, field) {
                let router = match registry.build_router(t, &what) {
                    Ok(r) => r,
                    Err(e) => {
                        // refused: the message names the field or says what is wrong
                        assert!(!e.to_string().is_empty(), "{what}");
                        continue;
                    }
                };
                tried += 1;
                let (tx, rx) = mpsc::channel();
                let (train, test, models) = (ds.train.clone(), ds.test.clone(), ds.models.clone());
                std::thread::spawn(move || {
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let ctx = Context::new(".");
                        router
                            .train(&train, &models, &ctx)
                            .and_then(|t| t.score_split(&test))
                            .map(|s| s.iter().all(|x| x.is_finite()))
                    }));
                    let _ = tx.send(outcome);
                });
                match rx.recv_timeout(Duration::from_secs(20)) {
                    Ok(Ok(Ok(finite))) => assert!(finite, "{what}: non-finite scores"),
                    Ok(Ok(Err(_))) => {} // an error is an answer
                    Ok(Err(_)) => panic!("{what}: panicked"),
                    Err(_) => slow.push(what),
                }
            }
        }
    }
    assert!(
        tried > 20,
        "only {tried} accepted configurations were exercised"
    );
    assert!(slow.is_empty(), "still running after 20 s: {slow:?}");
}

#[test]
fn extreme_values_of_every_labelers_numeric_fields_are_refused_or_give_labels_in_range() {
    let registry = rgd_components::registry().unwrap();
    let ds = simulated(&registry, "subjects = 2\ntrain_per_subject = 20\nseed = 22");
    let mut tried = 0;
    for entry in registry.entries(Kind::Labeler) {
        for field in &entry.fields {
            for (t, what) in probes(entry, field) {
                let Ok(labeler) = registry.build_labeler(t, &what) else {
                    continue;
                };
                tried += 1;
                // `iterations` at its ceiling is a long EM: a smaller split keeps it quick
                let split = ds.train.select(&(0..8).collect::<Vec<_>>());
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    labeler.label(&split)
                }))
                .unwrap_or_else(|_| panic!("{what}: panicked"));
                if let Ok(labels) = out {
                    rgd_core::labels::check_labels(&labels, &split, &what)
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            }
        }
    }
    assert!(
        tried > 5,
        "only {tried} accepted configurations were exercised"
    );
}

/// Every numeric leaf of a JSON value (objects in full, arrays by their first element): its
/// JSON pointer.
fn numeric_leaves(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Number(_) => out.push(at),
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                numeric_leaves(x, format!("{at}/{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            if let Some(x) = a.first() {
                numeric_leaves(x, format!("{at}/0"), out);
            }
        }
        _ => {}
    }
}

/// A trained artifact of every router type, each numeric field of it (a parameter, or the first
/// value of each array) set to an extreme value: loading refuses it naming the file, or the
/// artifact routes a query without a panic, an abort, a hang or a NaN score.
#[test]
fn extreme_values_in_every_routers_artifact_are_refused_or_route() {
    let registry = rgd_components::registry().unwrap();
    let ds = simulated(
        &registry,
        "subjects = 2\ntrain_per_subject = 20\ntest_per_subject = 5\ndim = 8\nseed = 3",
    );
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("artifact.json");
    const VALUES: [f64; 6] = [0.0, -1.0, 1e308, -1e308, 4_294_967_295.0, 1e20];
    let (mut tried, mut refused) = (0, 0);
    let mut slow = Vec::new();
    for entry in registry.entries(Kind::Router) {
        if entry.type_name == "process" {
            continue;
        }
        let mut table = toml::Table::new();
        table.insert("type".into(), entry.type_name.clone().into());
        let router = registry.build_router(table, &entry.type_name).unwrap();
        let trained = router
            .train(&ds.train, &ds.models, &Context::new("."))
            .unwrap();
        let original = serde_json::to_value(&trained).unwrap();
        let mut leaves = Vec::new();
        numeric_leaves(&original, String::new(), &mut leaves);
        assert!(!leaves.is_empty(), "{}", entry.type_name);
        for leaf in &leaves {
            for x in VALUES {
                let mut v = original.clone();
                *v.pointer_mut(leaf).unwrap() = serde_json::json!(x);
                std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
                let what = format!("{} {leaf} = {x}", entry.type_name);
                let loaded = match rgd_experiment::artifact::load_router(&path) {
                    Ok(r) => r,
                    Err(e) => {
                        assert!(e.to_string().contains("artifact.json"), "{what}: {e}");
                        refused += 1;
                        continue;
                    }
                };
                tried += 1;
                let (tx, rx) = mpsc::channel();
                std::thread::spawn(move || {
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        rgd_experiment::artifact::route(
                            loaded.as_ref(),
                            None,
                            "q",
                            Some(vec![0.25; 8]),
                        )
                        .map(|r| r.ranked.iter().all(|(_, s)| !s.is_nan()))
                    }));
                    let _ = tx.send(outcome);
                });
                match rx.recv_timeout(Duration::from_secs(20)) {
                    Ok(Ok(Ok(no_nan))) => assert!(no_nan, "{what}: a NaN score"),
                    Ok(Ok(Err(_))) => {}
                    Ok(Err(_)) => panic!("{what}: panicked"),
                    Err(_) => slow.push(what),
                }
            }
        }
    }
    assert!(
        tried > 50 && refused > 50,
        "{tried} routed, {refused} refused"
    );
    assert!(slow.is_empty(), "still routing after 20 s: {slow:?}");
}

/// Every numeric flag of every `rgd bench` command, with values beyond any sense (0, 2^32-1,
/// 2^64, negative, 1e400, NaN, empty): refused by the argument parser at once, naming the flag —
/// never a run that starts, panics, aborts on an allocation or hangs. A new flag must be listed
/// here (numeric: probed; else named as text) — the help is read to see that none is missed.
#[test]
fn extreme_values_of_every_bench_flag_are_refused_before_anything_runs() {
    // (command, its numeric flags, its flags that take text)
    type Flags<'a> = (&'a str, &'a [&'a str], &'a [&'a str]);
    let commands: &[Flags] = &[
        (
            "cascal",
            &[
                "subjects",
                "train-per-subject",
                "test-per-subject",
                "dim",
                "models",
                "repeats",
            ],
            &["plugin"],
        ),
        ("pool", &["questions"], &["models", "cache", "plugin"]),
        (
            "embed",
            &["batch", "repeats", "threads"],
            &["embedder", "pipeline", "against", "precision", "plugin"],
        ),
        ("cache", &[], &["plugin"]),
        ("cost", &["points", "repeats"], &["plugin"]),
        (
            "generate",
            &[
                "subjects",
                "calls",
                "questions-per-call",
                "sequences",
                "questions",
                "max-tokens",
            ],
            &["model", "descriptions", "plugin"],
        ),
        (
            "matrix",
            &["questions", "models", "dim", "repeats"],
            &["plugin"],
        ),
        ("scale", &["sizes"], &["routers", "plugin"]),
    ];
    let rgd = env!("CARGO_BIN_EXE_rgd");
    for (cmd, flags, text_flags) in commands {
        let help = std::process::Command::new(rgd)
            .args(["bench", cmd, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        for word in help.split_whitespace() {
            if let Some(flag) = word.strip_prefix("--")
                && help.contains(&format!("--{flag} <"))
            {
                assert!(
                    flags.contains(&flag) || text_flags.contains(&flag),
                    "`rgd bench {cmd} --{flag}` is not probed: list it above"
                );
            }
        }
        for flag in *flags {
            for v in [
                "0",
                "4294967295",
                "-1",
                "18446744073709551616",
                "1e400",
                "nan",
                "",
            ] {
                let t0 = std::time::Instant::now();
                let o = std::process::Command::new(rgd)
                    .args(["bench", cmd, &format!("--{flag}"), v, "-q"])
                    .output()
                    .unwrap();
                let e = String::from_utf8_lossy(&o.stderr);
                assert_eq!(
                    o.status.code(),
                    Some(2),
                    "rgd bench {cmd} --{flag} {v:?} was not refused: {e}"
                );
                assert!(
                    e.contains(&format!("--{flag}")) || e.contains("unexpected argument"),
                    "{cmd} --{flag} {v:?}: {e}"
                );
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "{cmd} --{flag} {v:?}"
                );
            }
        }
    }
}

/// The `llamacpp` backend's sizes are checked before a model file is opened: a value llama.cpp
/// would abort on, or that would silently become another, is an error naming the field.
#[test]
fn extreme_llamacpp_settings_are_refused_before_the_model_loads() {
    let registry = rgd_components::registry().unwrap();
    for (field, value) in [
        ("sequences", toml::Value::Integer(0)),
        ("sequences", toml::Value::Integer(4_294_967_295)),
        ("n_ctx", toml::Value::Integer(0)),
        ("n_ctx", toml::Value::Integer(4_294_967_295)),
        ("threads", toml::Value::Integer(-1)),
    ] {
        let mut t = toml::Table::new();
        t.insert("type".into(), "llamacpp".into());
        t.insert("model".into(), "no-such-model.gguf".into());
        t.insert(field.into(), value.clone());
        let e = registry
            .build_backend(t, "[backends.x]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("`{field}`")) && e.contains("[backends.x]"),
            "{field} = {value}: {e}"
        );
    }
}
