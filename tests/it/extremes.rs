//! Every router type, every numeric field, extreme values: the registry's check refuses what
//! cannot work, and whatever it accepts trains and scores a tiny split without a panic or an
//! abort (a failed allocation would end this test binary).

use rgd_core::{Context, Kind};
use std::sync::mpsc;
use std::time::Duration;

const INTEGERS: [i64; 4] = [0, 1, 4_294_967_295, i64::MAX];
const NUMBERS: [f64; 6] = [0.0, -1.0, 1e308, -1e308, f64::INFINITY, f64::NAN];

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
    let ds = registry
        .build_data_source(
            toml::from_str("type = \"simulated\"\nsubjects = 2\ntrain_per_subject = 20\ntest_per_subject = 10\nseed = 21").unwrap(),
            "world",
        )
        .unwrap()
        .load(&Context::new("."))
        .unwrap();
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
    let ds = registry
        .build_data_source(
            toml::from_str("type = \"simulated\"\nsubjects = 2\ntrain_per_subject = 20\nseed = 22")
                .unwrap(),
            "world",
        )
        .unwrap()
        .load(&Context::new("."))
        .unwrap();
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
