//! Every router of this crate passes the testkit's conformance check.
use rgd_router_baselines as _;
use rgd_testkit::{builtin, check_router};

#[test]
fn best_single() {
    check_router(&builtin(), "type = \"best_single\"").unwrap();
}

#[test]
fn random() {
    check_router(&builtin(), "type = \"random\"").unwrap();
}
