//! The simulated world passes the testkit's conformance check.
use rgd_sim as _;
use rgd_testkit::{builtin, check_data_source};

#[test]
fn simulated() {
    let t = "type = \"simulated\"\nsubjects = 2\ntrain_per_subject = 20\ntest_per_subject = 10";
    check_data_source(&builtin(), t, std::path::Path::new(".")).unwrap();
}
