//! Out-of-tree plugins: dynamic libraries (the template, and a faulty one) and processes (the
//! Python example router, and misbehaving commands).

use crate::common::{rgd, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Build a workspace cdylib and return the library's path (cargo reports it).
fn build_lib(package: &str) -> PathBuf {
    build_cdylib(package, &[], &package.replace('-', "_"))
}

/// Build the cdylib target `target` of `package` (`extra`: e.g. `--example NAME`) and return
/// the library's path.
fn build_cdylib(package: &str, extra: &[&str], target: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .current_dir(repo())
        .args(["build", "-p", package, "--message-format=json"])
        .args(extra)
        .output()
        .expect("cargo runs");
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == target)
        .flat_map(|v| {
            v["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .find(|f| f.extension().is_some_and(|e| e == "so" || e == "dylib"))
        .unwrap_or_else(|| panic!("cargo built no library {target} for {package}"))
}

fn python_router() -> String {
    repo()
        .join("examples/plugins/python/centroid_router.py")
        .display()
        .to_string()
}

fn world() -> &'static str {
    "[data]\ntype = \"simulated\"\nsubjects = 4\ntrain_per_subject = 60\ntest_per_subject = 50\n\n[routers.cascal]\ntype = \"cascal\"\n"
}

fn results(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn a_built_in_a_dylib_and_a_python_router_compare_side_by_side() {
    let lib = build_lib("rgd-plugin-template");
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("mix.toml");
    std::fs::write(
        &p,
        format!(
            "plugins = [\"{}\"]\n{}\n[filters.short]\ntype = \"min_words\"\nmin_words = 2\n\n[filters.short_py]\ntype = \"process\"\ncommand = [\"python3\", \"{py}\"]\nconfig = {{ min_words = 2 }}\n\n[routers.centroid]\ntype = \"centroid\"\n\n[routers.centroid_py]\ntype = \"process\"\ncommand = [\"python3\", \"{py}\"]\n\n[routers.best_single]\ntype = \"best_single\"\n\n[labelers.peers]\ntype = \"peer_share\"\n\n[labelers.peers_py]\ntype = \"process\"\ncommand = [\"python3\", \"{py}\"]\n\n[routers.knn_peers]\ntype = \"knn\"\nlabels = \"peers\"\n\n[routers.knn_peers_py]\ntype = \"knn\"\nlabels = \"peers_py\"\n\n[routers.knn_plurality]\ntype = \"knn\"\nlabels = \"plurality\"\n",
            lib.display(),
            world(),
            py = python_router()
        ),
    )
    .unwrap();
    let out = t.path().join("out");
    let o = rgd(
        t.path(),
        &["run", "mix.toml", "--out", out.to_str().unwrap(), "-q"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = results(&out);
    assert!(
        r["failed"].as_object().is_none_or(|f| f.is_empty()),
        "{}",
        r["failed"]
    );
    for name in ["cascal", "centroid", "centroid_py", "best_single"] {
        assert!(
            r["routers"][name]["top1"].is_number(),
            "{name}: {}",
            r["routers"]
        );
    }
    // the same algorithm in Rust (dylib) and Python (process): the same decisions
    assert_eq!(
        r["routers"]["centroid"]["top1"], r["routers"]["centroid_py"]["top1"],
        "{}",
        r["routers"]
    );
    // a dylib labeler and a process labeler (the same labels in Rust and Python) each label a
    // kNN's training: the same decisions, query-only, and not those of another labeler
    let top1 = |n: &str| r["routers"][n]["top1"].as_f64().unwrap();
    assert_eq!(top1("knn_peers"), top1("knn_peers_py"), "{}", r["routers"]);
    for n in ["knn_peers", "knn_peers_py"] {
        assert_eq!(r["routers"][n]["supervision"], "query_only");
    }
    assert_eq!(r["routers"]["knn_peers_py"]["labels"], "peers_py");
    let quality = r["label_quality"].as_array().unwrap();
    let agreement = |l: &str| {
        quality
            .iter()
            .find(|q| q["labeler"] == l && q["split"] == "train")
            .unwrap_or_else(|| panic!("no label quality for {l}: {quality:?}"))["brier"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(agreement("peers"), agreement("peers_py"));
    assert_ne!(agreement("peers"), agreement("plurality"));
    let steps: Vec<&str> = r["training_data"]["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["short", "short_py"]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| centroid_py | process |"), "{report}");

    // `rgd plugins` names each component's origin
    let o = rgd(t.path(), &["plugins", "--pipeline", "mix.toml"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    let canon = std::fs::canonicalize(&lib).unwrap();
    assert!(s.contains(&format!("[dylib {}]", canon.display())), "{s}");
    assert!(
        s.contains("centroid_py") && s.contains("[process `python3 "),
        "{s}"
    );
    assert!(s.contains("[built-in (rgd-router-cascal)]"), "{s}");
    assert!(
        s.contains("peer_share_py") && s.contains("labeler"),
        "the process's labeler is listed: {s}"
    );
    let o = rgd(
        t.path(),
        &["--plugin", lib.to_str().unwrap(), "plugins", "--json"],
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let centroid = v["router"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "centroid")
        .unwrap();
    assert_eq!(centroid["origin"]["origin"], "dylib");
    // the labeler kind: the built-in types with their fields, and the dylib's
    let labelers = v["labeler"].as_array().unwrap();
    for ty in [
        "key",
        "consensus",
        "plurality",
        "dawid_skene",
        "process",
        "peer_share",
    ] {
        assert!(
            labelers.iter().any(|e| e["type"] == ty),
            "labeler `{ty}` listed: {labelers:?}"
        );
    }
    let ds = labelers
        .iter()
        .find(|e| e["type"] == "dawid_skene")
        .unwrap();
    assert!(ds.to_string().contains("iterations"), "{ds}");
}

#[test]
fn a_library_built_against_another_rgd_core_is_refused_naming_both_versions() {
    let lib = build_lib("rgd-test-plugin-other-version");
    let o = rgd(&repo(), &["--plugin", lib.to_str().unwrap(), "plugins"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("refused: built with rgd-core `0.0.0-other`")
            && e.contains(&format!("this rgd has `{}`", env!("CARGO_PKG_VERSION"))),
        "{e}"
    );
}

#[test]
fn libraries_built_by_another_rustc_or_for_another_abi_are_refused_before_they_run() {
    let cases = [
        (
            "other_rustc",
            format!(
                "refused: built with rustc `rustc 0.0.0-other`, this rgd has `{}`",
                rgd_core::plugin::RUSTC_VERSION
            ),
        ),
        (
            "other_abi",
            format!(
                "refused: built with plugin ABI version `{}`, this rgd has `{}`",
                rgd_core::plugin::ABI_VERSION + 1,
                rgd_core::plugin::ABI_VERSION
            ),
        ),
    ];
    for (example, want) in cases {
        let lib = build_cdylib(
            "rgd-test-plugin-other-version",
            &["--example", example],
            example,
        );
        let o = rgd(&repo(), &["--plugin", lib.to_str().unwrap(), "plugins"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{example}: {e}");
        assert!(e.contains(&want), "{example}: {e}");
        // refused before registration: its router is not listed, nothing panicked
        assert!(
            !e.contains("panicked") && !String::from_utf8_lossy(&o.stdout).contains("never_runs"),
            "{e}"
        );
    }
}

#[test]
fn bad_libraries_are_refused_with_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    // not a library at all
    let junk = t.path().join("junk.so");
    std::fs::write(&junk, "not a library").unwrap();
    let o = rgd(t.path(), &["--plugin", junk.to_str().unwrap(), "plugins"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("junk.so: cannot load the library"), "{e}");
    // a real library without the declaration symbol
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
        "/usr/lib/libm.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libm on this machine");
    let o = rgd(t.path(), &["--plugin", libm, "plugins"]);
    let e = stderr(&o);
    assert!(
        e.contains("not an rgd plugin (no `RGD_PLUGIN_DECLARATION` symbol"),
        "{e}"
    );
    // the same components twice: a duplicate type, both origins named
    let lib = build_lib("rgd-plugin-template");
    let copy = t.path().join("librgd_copy.so");
    std::fs::copy(&lib, &copy).unwrap();
    let o = rgd(
        t.path(),
        &[
            "--plugin",
            lib.to_str().unwrap(),
            "--plugin",
            copy.to_str().unwrap(),
            "plugins",
        ],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("duplicate")
            && e.contains("`centroid`")
            && e.contains("librgd_copy.so")
            && e.contains(&std::fs::canonicalize(&lib).unwrap().display().to_string()),
        "{e}"
    );
}

#[test]
fn a_plugin_that_panics_in_registration_or_routing_leaves_the_host_running() {
    let lib = build_lib("rgd-test-plugin-faulty");
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p.toml");
    std::fs::write(
        &p,
        format!(
            "plugins = [\"{}\"]\n{}\n[routers.faulty]\ntype = \"faulty_panics\"\n",
            lib.display(),
            world()
        ),
    )
    .unwrap();
    // a panic during registration: an error, not an abort
    let o = Command::new(env!("CARGO_BIN_EXE_rgd"))
        .current_dir(t.path())
        .args(["run", "p.toml", "--out", "out1", "-q"])
        .env("RGD_FAULTY_PANIC_REGISTER", "1")
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("registration failed: plugin panicked while registering: faulty plugin: deliberate panic during registration"),
        "{e}"
    );
    // a panic while routing: that router fails, the others finish
    let o = rgd(t.path(), &["run", "p.toml", "--out", "out2", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = results(&t.path().join("out2"));
    assert!(r["routers"]["cascal"]["top1"].is_number());
    let err = r["failed"]["faulty"]["error"].as_str().unwrap();
    assert!(
        err.contains("plugin panicked in score: faulty plugin: deliberate panic while scoring"),
        "{err}"
    );
}

#[test]
fn process_plugins_that_exit_hang_or_print_garbage_fail_clearly_and_the_run_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p.toml");
    std::fs::write(
        &p,
        format!(
            "{}\n[routers.exits]\ntype = \"process\"\ncommand = [\"python3\", \"-c\", \"import sys; sys.exit(3)\"]\n\n[routers.hangs]\ntype = \"process\"\ncommand = [\"python3\", \"-c\", \"import time; time.sleep(60)\"]\ntimeout_s = 1.0\n\n[routers.babbles]\ntype = \"process\"\ncommand = [\"python3\", \"-c\", \"print('hello, I am a router')\"]\n\n[routers.old]\ntype = \"process\"\ncommand = [\"python3\", \"-c\", \"import json; input(); print(json.dumps({{'protocol': 0}}))\"]\n\n[routers.missing]\ntype = \"process\"\ncommand = [\"/nonexistent/router\"]\n\n[routers.python]\ntype = \"process\"\ncommand = [\"python3\", \"{}\"]\n",
            world(),
            python_router()
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let o = rgd(t.path(), &["run", "p.toml", "--out", "out", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        started.elapsed().as_secs() < 50,
        "the hanging process was not cut off by its timeout"
    );
    let r = results(&t.path().join("out"));
    assert!(r["routers"]["cascal"]["top1"].is_number());
    assert!(r["routers"]["python"]["top1"].is_number());
    let err = |n: &str| r["failed"][n]["error"].as_str().unwrap_or("").to_string();
    assert!(
        err("exits").contains("exited (exit status: 3) before answering"),
        "{}",
        err("exits")
    );
    assert!(
        err("hangs").contains("no answer within 1.0 s"),
        "{}",
        err("hangs")
    );
    assert!(
        err("babbles").contains("printed non-protocol output on stdout: `hello, I am a router`"),
        "{}",
        err("babbles")
    );
    assert!(
        err("old").contains("speaks protocol 0, this rgd speaks 1"),
        "{}",
        err("old")
    );
    assert!(
        err("missing").contains("cannot start"),
        "{}",
        err("missing")
    );
}
