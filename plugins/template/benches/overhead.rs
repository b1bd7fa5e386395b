//! Overhead of a router call across the plugin boundaries, per query: the template's
//! `centroid` router linked in (built-in), the same router loaded from its dynamic library,
//! and the same algorithm in Python behind the process protocol
//! (`examples/plugins/python/centroid_router.py`).
//!
//! `cargo bench -p rgd-plugin-template` (builds the library in release first).

use rgd_core::{Context, Query, Registry, Router, TrainedRouter};
use std::path::PathBuf;
use std::time::Instant;

fn per_query(router: &dyn TrainedRouter, test: &rgd_core::Split, reps: usize) -> (f64, f64) {
    let mut out = vec![0.0; router.models().len()];
    let mut times = Vec::with_capacity(reps * test.len());
    for _ in 0..reps {
        for (i, q) in test.questions.iter().enumerate() {
            let query = Query {
                id: &q.id,
                text: &q.text,
                embedding: test.embedding(i),
            };
            let t = Instant::now();
            router.score(&query, &mut out).expect("scores");
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    (at(0.5), at(0.99))
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let world = rgd_sim::Simulated {
        subjects: 8,
        train_per_subject: 200,
        test_per_subject: 100,
        dim: 384,
        ..Default::default()
    }
    .generate()
    .expect("world");
    let ctx = Context::new(".");
    let models = world.models.clone();

    let builtin = rgd_plugin_template::Centroid::default()
        .train(&world.train, &models, &ctx)
        .expect("trains");

    let lib = root.join("target/release/librgd_plugin_template.so");
    let mut registry = Registry::empty();
    rgd_dylib::load(&lib, &mut registry)
        .expect("the release library loads (cargo bench builds it)");
    let dylib = registry
        .build_router(toml::toml! { type = "centroid" }, "bench")
        .expect("builds")
        .train(&world.train, &models, &ctx)
        .expect("trains");

    let script = root.join("examples/plugins/python/centroid_router.py");
    let process = rgd_process::ProcessRouter {
        command: vec!["python3".into(), script.display().to_string()],
        component: None,
        config: Default::default(),
        timeout_s: 60.0,
        supervision: rgd_core::Supervision::QueryOnly,
    }
    .train(&world.train, &models, &ctx)
    .expect("the Python router trains");

    println!(
        "centroid router, {} models, {}-d embeddings, {} test queries, one score call per query",
        models.len(),
        world.test.embeddings.ncols(),
        world.test.len()
    );
    let (b50, b99) = per_query(builtin.as_ref(), &world.test, 20);
    let (d50, d99) = per_query(dylib.as_ref(), &world.test, 20);
    let (p50, p99) = per_query(process.as_ref(), &world.test, 2);
    let us = |s: f64| s * 1e6;
    println!(
        "built-in   p50 {:>9.2} us  p99 {:>9.2} us",
        us(b50),
        us(b99)
    );
    println!(
        "dylib      p50 {:>9.2} us  p99 {:>9.2} us  (overhead p50 {:+.2} us)",
        us(d50),
        us(d99),
        us(d50 - b50)
    );
    println!(
        "process    p50 {:>9.2} us  p99 {:>9.2} us  (overhead p50 {:+.2} us; Python, JSON lines)",
        us(p50),
        us(p99),
        us(p50 - b50)
    );
}
