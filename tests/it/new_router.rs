//! docs/write-a-router.md followed step by step: a new in-tree router is its crate plus one line
//! (in components/Cargo.toml). The workspace is copied, the template's router becomes a crate
//! under routers/, the line is added, a lean rgd is built from the copy and runs the router in
//! a pipeline next to best_single.

use crate::common::stderr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the copy leaves out: build output, history, and folders no workspace member needs.
const SKIP: &[&str] = &[
    "target",
    ".git",
    "out",
    "python/target",
    "fuzz",
    "examples",
    "tests/fixtures",
];

fn copy_workspace(from: &Path, to: &Path, rel: &Path) {
    std::fs::create_dir_all(to.join(rel)).unwrap();
    for e in std::fs::read_dir(from.join(rel)).unwrap() {
        let e = e.unwrap();
        let r = rel.join(e.file_name());
        if SKIP.iter().any(|s| Path::new(s) == r) {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_workspace(from, to, &r);
        } else if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(&r)).unwrap();
        }
    }
}

#[test]
fn a_new_router_is_one_crate_and_one_line() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let t = tempfile::tempdir().unwrap();
    // the copy and its build live beside the suite's target folder, at a fixed path, so a
    // rerun rebuilds only the copied workspace's crates
    let target = PathBuf::from(env!("CARGO_BIN_EXE_rgd"))
        .parent()
        .and_then(|d| d.parent())
        .map(|t| t.join("new-router-test"))
        .unwrap();
    let ws = target.join("workspace");
    if ws.exists() {
        std::fs::remove_dir_all(&ws).unwrap();
    }
    copy_workspace(&repo, &ws, Path::new(""));

    // 1. the crate: the template's router, registered in the tree instead of exported
    let krate = ws.join("routers/centroid");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"rgd-router-centroid\"\nversion.workspace = true\nedition.workspace = true\n\n[dependencies]\nrgd-core.workspace = true\nserde.workspace = true\nschemars.workspace = true\ntypetag.workspace = true\nndarray.workspace = true\n",
    )
    .unwrap();
    let template = std::fs::read_to_string(repo.join("plugins/template/src/lib.rs")).unwrap();
    let export = "rgd_core::export_plugin!(router \"centroid\" => Centroid, filter \"min_words\" => MinWords, labeler \"peer_share\" => PeerShare);";
    assert!(
        template.contains(export),
        "the template exports its components in one line"
    );
    let lib = template.replace(
        export,
        "rgd_core::register!(router, \"centroid\", Centroid);\nrgd_core::register!(filter, \"min_words\", MinWords);",
    );
    std::fs::write(krate.join("src/lib.rs"), lib).unwrap();

    // 2. the one line: components/Cargo.toml lists the crate
    let list = ws.join("components/Cargo.toml");
    let before = std::fs::read_to_string(&list).unwrap();
    let anchor = "[dependencies]\n";
    assert!(before.contains(anchor));
    let after = before.replacen(
        anchor,
        &format!("{anchor}rgd-router-centroid = {{ path = \"../routers/centroid\" }}\n"),
        1,
    );
    std::fs::write(&list, &after).unwrap();
    assert_eq!(after.lines().count(), before.lines().count() + 1);

    // 3. build a lean rgd from the copy
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .current_dir(&ws)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--offline",
            "-p",
            "rgd",
            "--no-default-features",
            "--features",
            "rgd-components/rgd-router-baselines",
        ])
        .output()
        .expect("cargo runs");
    assert!(o.status.success(), "{}", stderr(&o));

    // 4. the router runs in a pipeline next to best_single
    std::fs::write(
        t.path().join("p.toml"),
        "[data]\ntype = \"simulated\"\nsubjects = 4\ntrain_per_subject = 60\ntest_per_subject = 30\n\n[routers.centroid]\ntype = \"centroid\"\n\n[routers.best_single]\ntype = \"best_single\"\n",
    )
    .unwrap();
    let o = Command::new(target.join("debug/rgd"))
        .current_dir(t.path())
        .args(["run", "p.toml", "--out", "o", "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("o/results.json")).unwrap())
            .unwrap();
    for name in ["centroid", "best_single"] {
        let top1 = r["routers"][name]["top1"].as_f64();
        assert!(top1.is_some_and(|a| a > 0.0 && a <= 1.0), "{name}: {r}");
    }
    let plugins = Command::new(target.join("debug/rgd"))
        .arg("plugins")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&plugins.stdout);
    assert!(
        listed.contains("centroid") && listed.contains("rgd-router-centroid"),
        "{listed}"
    );
}
