//! The process router and filter pass the testkit's conformance check, served by the Python
//! example plugin (examples/plugins/python/centroid_router.py, standard library only).
use rgd_process as _;
use rgd_testkit::{builtin, check_filter, check_router};

fn table(component: &str) -> String {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/plugins/python/centroid_router.py");
    format!(
        "type = \"process\"\ncommand = [\"python3\", {:?}]\ncomponent = \"{component}\"",
        script.display().to_string()
    )
}

#[test]
fn process_router() {
    check_router(&builtin(), &table("centroid_py")).unwrap();
}

#[test]
fn process_filter() {
    check_filter(&builtin(), &table("min_words_py")).unwrap();
}
