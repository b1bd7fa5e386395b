//! The authors' layout passes the testkit's conformance check, on the committed reference
//! fixture.
use rgd_reference_layout as _;
use rgd_testkit::{builtin, check_data_source};

#[test]
fn reference_layout() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let t = "type = \"reference_layout\"\npath = \"cascal-reference\"\ntask = \"SYN\"";
    check_data_source(&builtin(), t, &dir).unwrap();
}
