//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The authors' CASCAL reference fixture, kept in the repository (`tests/fixtures/`).
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cascal-reference")
}

/// Run the `rgd` binary with `args` in `cwd`.
pub fn rgd(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rgd"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("rgd runs")
}

/// `rgd run PIPELINE --out OUT` in `cwd`.
pub fn rgd_run(cwd: &Path, pipeline: &Path, out: &Path) -> Output {
    rgd(
        cwd,
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    )
}

/// stderr of an output, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Copy a folder tree (writable copy of a read-only fixture).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
            let mut perm = std::fs::metadata(&dst).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&dst, perm).unwrap();
        }
    }
}

/// A writable copy of the reference fixture in a temp dir; returns (tempdir, layout root).
pub fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("layout");
    copy_tree(&fixture_dir(), &root);
    (t, root)
}

/// Write a pipeline reading the layout at `layout` (relative to the pipeline's folder).
pub fn layout_pipeline(dir: &Path, layout: &str, extra: &str) -> PathBuf {
    let p = dir.join("pipeline.toml");
    std::fs::write(
        &p,
        format!(
            "[data]\ntype = \"reference_layout\"\npath = \"{layout}\"\ntask = \"SYN\"\n\n[routers.cascal]\ntype = \"cascal\"\n{extra}"
        ),
    )
    .unwrap();
    p
}

/// Edit a JSON file in place.
pub fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}
